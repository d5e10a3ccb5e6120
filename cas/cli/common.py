"""What the command modules share: the store options and opening the store they name, reading a
manifest (a store key or a local file), the scale and file-system-location options, and a transfer
with its progress bar. Every command module imports from here; none imports another command module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from fscas.cli.args import positive_int
from fscas.cli.output import progress_bar
from fscas.errors import ManifestError

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from fscas.blocking import Store
    from fscas.manifests import Manifest

__all__ = ["add_location_options", "add_scale_options", "default_store_url", "flag_options", "is_store_key",
           "locations_from", "manifest_of", "open_store_of", "read_manifest", "scaled", "store_arg", "store_url_of",
           "transfer"]

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
