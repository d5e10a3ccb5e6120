"""`fscas push|pull|gc`, `fscas attachment upload|download`, `fscas manifest upload|download`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fscas.cli_output import emit_json, progress_bar, warn
from fscas.files import atomic_write_bytes
from fscas.keys import MANIFESTS
from fscas.manifests import encode, manifest_hash, snapshot
from fscas.summary import TransferSummary

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from fscas.blocking import Store

__all__ = ["add_store_commands", "default_store_url"]

T = TypeVar("T")


def default_store_url() -> str:
    """`$FSCAS_STORE`, else a local folder store under `$XDG_DATA_HOME/fscas/store`."""
    if url := os.environ.get("FSCAS_STORE"):
        return url
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "fscas", "store")


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=None, metavar="URL",
                   help="s3://bucket/prefix?endpoint_url=..., gs://..., az://..., a folder "
                        "(default: $FSCAS_STORE or a local folder store)")
    p.add_argument("--json", action="store_true", help="print only a JSON summary on stdout")


def add_store_commands(groups: Any, manifest_group: Any) -> None:
    """Register the store commands; `manifest upload|download` join the `manifest` group."""
    p = groups.add_parser("push", help="snapshot a folder, upload what is missing, write its input manifest")
    p.add_argument("root")
    p.add_argument("--farm-id", default="farm-local")
    p.add_argument("--queue-id", default="queue-local")
    p.add_argument("-o", "--output", help="also write the manifest file here")
    _store_arg(p)
    p.set_defaults(handler=_push)

    p = groups.add_parser("pull", help="materialise a manifest (a store key or a local file) into a folder")
    p.add_argument("manifest", help="a key under the store (Manifests/...) or a local manifest file")
    p.add_argument("dest")
    p.add_argument("--conflict", choices=["skip", "overwrite", "create-copy"], default="skip")
    _store_arg(p)
    p.set_defaults(handler=_pull)

    p = groups.add_parser("gc", help="list (and with --delete remove) Data objects no manifest references")
    p.add_argument("--delete", action="store_true")
    p.add_argument("--grace", type=float, default=86400.0, metavar="SECONDS",
                   help="keep objects younger than this (uploads write data before manifests)")
    _store_arg(p)
    p.set_defaults(handler=_gc)

    p = groups.add_parser("verify", help="read back and hash every object manifests reference; report what is wrong")
    p.add_argument("manifests", nargs="*", metavar="MANIFEST",
                   help="local manifest files (default: every Data object in the store)")
    _store_arg(p)
    p.set_defaults(handler=_verify)

    group = groups.add_parser("attachment", help="upload or download the files of a manifest")
    sub = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("upload", help="upload a manifest's files that the store lacks")
    p.add_argument("-m", "--manifest", required=True)
    p.add_argument("-r", "--root", required=True)
    p.add_argument("--force-check", action="store_true", help="ignore the existence cache; ask the server")
    _store_arg(p)
    p.set_defaults(handler=_attachment_upload)
    p = sub.add_parser("download", help="download a manifest's files into a folder, verified")
    p.add_argument("-m", "--manifest", required=True)
    p.add_argument("-d", "--dest", required=True)
    p.add_argument("--conflict", choices=["skip", "overwrite", "create-copy"], default="skip")
    _store_arg(p)
    p.set_defaults(handler=_attachment_download)

    p = manifest_group.add_parser("upload", help="put a manifest file at Manifests/[PREFIX/]NAME")
    p.add_argument("file")
    p.add_argument("--prefix", default="", help="folder under Manifests/")
    _store_arg(p)
    p.set_defaults(handler=_manifest_upload)
    p = manifest_group.add_parser("download", help="get a manifest object into a file")
    p.add_argument("key")
    p.add_argument("-o", "--output", required=True)
    _store_arg(p)
    p.set_defaults(handler=_manifest_download)


def _open(args: argparse.Namespace) -> Store:
    from fscas.blocking import open_store  # lazily: the store imports fsspec

    return open_store(args.store or default_store_url())


def _transfer(args: argparse.Namespace, what: str, run: Callable[[Callback | None], T]) -> T:
    bar = None if args.json else progress_bar(what)
    with bar if bar is not None else contextlib.nullcontext():
        return run(bar)


def _report(args: argparse.Namespace, summary: TransferSummary, **extra: Any) -> None:
    if args.json:
        emit_json({**extra, **summary.as_dict()})
        return
    for name, value in extra.items():
        print(f"{name}: {value}")
    print(f"{summary.files} files, {summary.bytes} bytes transferred; {summary.skipped_files} skipped; "
          f"{summary.seconds:.2f} s ({summary.rate / 2**20:.1f} MiB/s)", file=sys.stderr)


def _push(args: argparse.Namespace) -> int:
    def on_skip(rel: str, why: str) -> None:
        if not args.json:
            warn(f"skipped {rel}: {why}")

    m = snapshot(args.root, on_skip=on_skip)
    if not m.paths:
        from fscas.errors import SnapshotError

        raise SnapshotError(f"{args.root}: no files to push")
    if args.output:
        atomic_write_bytes(args.output, encode(m), durable=False)
    with _open(args) as store:
        key, digest, summary = _transfer(args, "uploading", lambda bar: store.push(
            m, args.root, farm_id=args.farm_id, queue_id=args.queue_id, callback=bar))
        _report(args, summary, store=store.url, key=key, hash=digest, total_files=len(m.paths),
                total_size=m.total_size)
    return 0


def _pull(args: argparse.Namespace) -> int:
    return _download(args, from_store=not os.path.isfile(args.manifest))


def _attachment_upload(args: argparse.Namespace) -> int:
    from fscas.cli_manifest import read_manifest

    m = read_manifest(args.manifest)
    with _open(args) as store:
        summary = _transfer(args, "uploading", lambda bar: store.upload(
            m, args.root, callback=bar, use_cache=not args.force_check))
        _report(args, summary, store=store.url)
    return 0


def _attachment_download(args: argparse.Namespace) -> int:
    return _download(args, from_store=False)


def _download(args: argparse.Namespace, *, from_store: bool) -> int:
    """Materialise `args.manifest` (a key in the store, or a local file) into `args.dest`."""
    from fscas.cli_manifest import read_manifest

    with _open(args) as store:
        m = store.get_manifest(args.manifest) if from_store else read_manifest(args.manifest)
        summary = _transfer(args, "downloading", lambda bar: store.download(
            m, args.dest, conflict=args.conflict, callback=bar))
        _report(args, summary, store=store.url, dest=args.dest)
    return 0


def _manifest_upload(args: argparse.Namespace) -> int:
    from fscas.cli_manifest import read_manifest

    m = read_manifest(args.file)
    name = os.path.basename(args.file)
    key = "/".join(x for x in (MANIFESTS, args.prefix.strip("/"), name) if x)
    with _open(args) as store:
        digest = store.put_manifest(key, m, if_absent=False)
    if args.json:
        emit_json({"key": key, "hash": digest})
    else:
        print(f"{key} {digest}")
    return 0


def _manifest_download(args: argparse.Namespace) -> int:
    from fscas.manifests import decode
    from fscas.runner import run_sync

    with _open(args) as store:
        data = run_sync(store.aio.backend.get(args.key))  # the stored bytes, not a re-encoding
    m = decode(data)
    atomic_write_bytes(args.output, data)
    if args.json:
        emit_json({"key": args.key, "output": args.output, "hash": manifest_hash(data), "files": len(m.paths)})
    else:
        print(f"{args.output}: {len(m.paths)} files, hash {manifest_hash(data)}")
    return 0


def _gc(args: argparse.Namespace) -> int:
    with _open(args) as store:
        report = store.gc(delete=args.delete, grace_seconds=args.grace)
    if args.json:
        emit_json({"store": store.url, "manifests": report.manifests, "referenced": report.referenced,
                   "unreferenced": list(report.unreferenced), "unreferenced_bytes": report.unreferenced_bytes,
                   "deleted": report.deleted})
        return 0
    for key in report.unreferenced:
        print(key)
    verb = "deleted" if report.deleted else "unreferenced (run with --delete to remove)"
    print(f"{len(report.unreferenced)} objects, {report.unreferenced_bytes} bytes {verb}; "
          f"{report.manifests} manifests reference {report.referenced} digests", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from fscas.cli_manifest import read_manifest

    manifests = [read_manifest(m) for m in args.manifests] or None
    with _open(args) as store:
        report = store.verify(manifests)
    if args.json:
        emit_json({"store": store.url, "ok": report.ok, "checked": report.checked, "bytes": report.bytes,
                   "missing": list(report.missing), "corrupt": list(report.corrupt)})
    else:
        for digest in report.missing:
            print(f"missing: Data/{digest}.xxh128")
        for line in report.corrupt:
            print(f"corrupt: {line}")
        print(f"{report.checked} objects, {report.bytes} bytes checked: "
              f"{len(report.missing)} missing, {len(report.corrupt)} corrupt", file=sys.stderr)
    return 0 if report.ok else 1
