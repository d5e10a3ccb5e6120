"""What the command modules share: the store options and opening the store they name, reading a
manifest (a store key or a local file), the scale, file-system-location and download options, and a
transfer with its progress bar and its report. Every command module imports from here; none
imports another command module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from fscas.cli.args import add_filters, positive_int
from fscas.cli.output import emit_json, progress_bar, warn
from fscas.errors import ManifestError

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from fscas.blocking import Store
    from fscas.manifests import Manifest
    from fscas.summary import TransferSummary

__all__ = ["add_location_options", "add_scale_options", "add_sync_options", "default_store_url", "download_manifest",
           "filtered", "flag_options", "is_store_key", "locations_from", "manifest_of", "not_shared", "open_store_of",
           "read_manifest", "report_transfer", "scaled", "store_arg", "store_url_of", "transfer", "without_shared"]

T = TypeVar("T")


def default_store_url() -> str:
    """`$FSCAS_STORE`, else a local folder store under the user's data folder (`default_data_dir`:
    `$XDG_DATA_HOME/fscas/store`, `~/.local/share/fscas/store` on Linux)."""
    if url := os.environ.get("FSCAS_STORE"):
        return url
    from fscas.manifests.cachedir import default_data_dir

    return os.path.join(default_data_dir(), "store")


def store_arg(p: argparse.ArgumentParser, *, positional: bool = False) -> None:
    """`--store URL` (or, with `positional`, an optional `STORE` first, as `aws s3 ls URL` takes it),
    `--endpoint-url`, `--profile` and `--region` as the aws CLI spells them, `--json` and `--concurrency`."""
    if positional:
        p.add_argument("store_pos", nargs="?", default=None, metavar="STORE",
                       help="the store URL or folder (same as --store)")
    p.add_argument("--store", default=None, metavar="URL",
                   help="s3://bucket/prefix?endpoint_url=..., gs://..., az://..., a folder "
                        "(default: $FSCAS_STORE or a local folder store)")
    p.add_argument("--endpoint-url", default=None, metavar="URL",
                   help="the store's endpoint (MinIO, SeaweedFS, Azurite, fake-gcs-server), as the aws CLI's flag")
    p.add_argument("--profile", default=None, help="the AWS profile of an s3:// store (as the aws CLI's flag)")
    p.add_argument("--region", default=None, help="the region of an s3:// store (as the aws CLI's flag)")
    p.add_argument("--json", action="store_true", help="print only a JSON summary on stdout")
    p.add_argument("--concurrency", type=positive_int, default=None, metavar="N",
                   help="transfers in flight at once (default 32; 8 for a folder store)")


def store_url_of(args: argparse.Namespace) -> str:
    """The store the command line names: `STORE` or `--store` (not both), else the default."""
    from fscas.errors import ConfigError

    positional = getattr(args, "store_pos", None)
    if positional and args.store and positional != args.store:
        raise ConfigError(f"two stores given: {positional!r} and --store {args.store!r}; give one")
    return positional or args.store or default_store_url()


def flag_options(args: argparse.Namespace) -> dict[str, Any]:
    """`--endpoint-url`, `--profile`, `--region` as store options (they win over the URL's)."""
    found = {"endpoint_url": getattr(args, "endpoint_url", None), "profile": getattr(args, "profile", None),
             "region": getattr(args, "region", None)}
    return {name: value for name, value in found.items() if value is not None}


def open_store_of(args: argparse.Namespace) -> Store:
    """The store the command line names (or the default local folder store)."""
    from fscas.blocking import open_store  # lazily: the store imports fsspec

    return open_store(store_url_of(args), concurrency=getattr(args, "concurrency", None), **flag_options(args))


def read_manifest(path: str) -> Manifest:
    """Read and decode a local manifest file; errors name the file."""
    from fscas.manifests import decode

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ManifestError(f"{path}: cannot read manifest: {e.strerror}") from e
    try:
        return decode(data)
    except ManifestError as e:
        raise ManifestError(f"{path}: {e}") from e


def is_store_key(ref: str) -> bool:
    """A manifest reference that names a key in the store (`Manifests/...`) rather than a local file."""
    return not os.path.isfile(ref) and ref.startswith("Manifests/")


def manifest_of(args: argparse.Namespace, ref: str) -> Manifest:
    """`ref` as a local manifest file, or as a key in the store when it is one (`is_store_key`)."""
    if not is_store_key(ref):
        return read_manifest(ref)
    with open_store_of(args) as store:
        return store.get_manifest(ref)


def add_scale_options(p: argparse.ArgumentParser) -> None:
    """`--scheduler ADDRESS` or `--processes N`: spread the work (`fscas.distributed`)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="spread the work over the Dask cluster of this scheduler (tcp://host:8786)")
    group.add_argument("--processes", type=positive_int, default=None, metavar="N",
                       help="spread the work over N local processes")


@contextlib.contextmanager
def scaled(args: argparse.Namespace) -> Iterator[dict[str, Any] | None]:
    """The `client=` or `executor=` the scale options ask for, or None for this process alone."""
    from fscas.errors import ConfigError, Unreachable

    if getattr(args, "scheduler", None):
        try:
            from distributed import Client
        except ImportError as e:
            raise ConfigError("--scheduler needs dask.distributed: pip install 'dask[distributed]' (in a checkout "
                              "of fscas: pip install -e '.[dask]')") from e
        try:
            client = Client(args.scheduler, timeout=30)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as e:  # distributed says "Timed out trying to connect ... after 30 s"
            raise Unreachable(f"--scheduler {args.scheduler}: no Dask scheduler answers there "
                              f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
        with client:
            yield {"client": client}
    elif getattr(args, "processes", None):
        from fscas.distributed import process_pool

        with process_pool(args.processes) as pool:
            yield {"executor": pool}
    else:
        yield None


def add_location_options(p: argparse.ArgumentParser, *, typed: bool) -> None:
    """`--file-system-location NAME=PATH[:LOCAL|:SHARED]` (repeatable) and `--file-system-locations FILE`."""
    kinds = "[:LOCAL|:SHARED]" if typed else ""
    p.add_argument("--file-system-location", action="append", default=[], metavar=f"NAME=PATH{kinds}",
                   help="a storage-profile file-system location on this machine (repeatable)")
    p.add_argument("--file-system-locations", default=None, metavar="FILE",
                   help="the locations of a storage profile, as JSON ({\"fileSystemLocations\": [...]})")


def locations_from(args: argparse.Namespace) -> list[Any]:
    """The `FileSystemLocation`s the location options name."""
    from fscas.pathmapping import FileSystemLocation

    found = list(FileSystemLocation.load(args.file_system_locations)) if args.file_system_locations else []
    return found + [FileSystemLocation.parse(text) for text in args.file_system_location]


def transfer(args: argparse.Namespace, what: str, run: Callable[[Callback | None], T]) -> T:
    """Run a transfer with a progress bar on a terminal (none with --json)."""
    bar = None if args.json else progress_bar(what)
    with bar if bar is not None else contextlib.nullcontext():
        return run(bar)


def add_sync_options(p: argparse.ArgumentParser) -> None:
    """`--conflict`, `--checksum`, `--dry-run` and the include/exclude filters of a download."""
    p.add_argument("--conflict", choices=["skip", "overwrite", "create-copy"], default="skip",
                   help="what to do with a local file that differs from the manifest: keep it and name it "
                        "(skip, the default), replace it (overwrite), or download beside it as 'name (1).ext' "
                        "(create-copy). Identical files are always left alone")
    p.add_argument("--checksum", action="store_true",
                   help="compare local files by hash, not by size and mtime (slower; when mtimes lie)")
    p.add_argument("--dry-run", action="store_true", help="say what would be downloaded; write nothing")
    add_filters(p)


_NAMED = 20  # kept files named one by one on stderr; the rest counted (--json lists them all)


def report_transfer(args: argparse.Namespace, summary: TransferSummary, *, download: bool = False,
                    **extra: Any) -> None:
    """A transfer's summary: JSON with `extra` fields, or lines on stdout and stderr."""
    if args.json:
        emit_json({**extra, **summary.as_dict()})
        return
    for name, value in extra.items():
        if name not in ("snapshot_skipped", "dry_run") and value != []:  # skipped files were warned about one by one
            print(f"{name}: {value}")
    if download:
        for path in summary.kept[:_NAMED]:
            warn(f"kept {path}: it differs from the manifest (--conflict overwrite or create-copy to replace it)")
        if len(summary.kept) > _NAMED:
            warn(f"kept {len(summary.kept) - _NAMED} more files that differ from the manifest (--json lists them)")
        skipped = f"{summary.unchanged_files} unchanged, {len(summary.kept)} kept"
    else:
        skipped = f"{summary.skipped_files} already in the store"
    if extra.get("dry_run"):
        print(f"would transfer {summary.files} files, {summary.bytes} bytes; {skipped}; nothing was written "
              "(--dry-run)", file=sys.stderr)
        return
    print(f"{summary.files} files, {summary.bytes} bytes transferred; {skipped}; "
          f"{summary.seconds:.2f} s ({summary.rate / 2**20:.1f} MiB/s)", file=sys.stderr)


def not_shared(root: str, locations: list[Any]) -> Callable[[str], bool]:
    """Whether a manifest path may be sent before the snapshot ends: not under a SHARED location."""
    from fscas.pathmapping import innermost

    if not any(loc.type == "SHARED" for loc in locations):
        return lambda rel: True
    base = os.path.abspath(root)

    def sendable(rel: str) -> bool:
        loc = innermost(locations, os.path.join(base, *rel.split("/")))
        return loc is None or loc.type != "SHARED"
    return sendable


def without_shared(m: Manifest, root: str, locations: list[Any], *, quiet: bool) -> tuple[Manifest, list[str]]:
    """`m` without the files under SHARED locations (on shared storage: Deadline does not upload them)."""
    from fscas.manifests import Manifest

    sendable = not_shared(root, locations)
    kept: list[Any] = []
    dropped: list[Any] = []
    for p in m.paths:
        (kept if sendable(p.path) else dropped).append(p)
    if not dropped:
        return m, []
    if not quiet:
        warn(f"{len(dropped)} files under SHARED file-system locations are not uploaded")
    return Manifest.from_paths(kept), [p.path for p in dropped]


def download_manifest(args: argparse.Namespace, *, from_store: bool) -> int:
    """Materialise `args.manifest` (a key in the store, or a local file) into `args.dest`."""
    with open_store_of(args) as store:
        m = filtered(store.get_manifest(args.manifest) if from_store else read_manifest(args.manifest), args)
        summary = transfer(args, "downloading", lambda bar: store.download(
            m, args.dest, conflict=args.conflict, checksum=args.checksum, callback=bar, dry_run=args.dry_run))
        report_transfer(args, summary, download=True, store=store.url, dest=args.dest,
                **({"dry_run": True} if args.dry_run else {}))
    return 0


def filtered(m: Manifest, args: argparse.Namespace) -> Manifest:
    """The manifest's files that `--include`/`--exclude` keep (Deadline's `download-output --include`)."""
    if not (args.include or args.exclude):
        return m
    from fscas.manifests import GlobFilter

    return GlobFilter.from_globs(args.include, args.exclude).kept(m)
