"""`fscas manifest ...`: snapshot, diff, merge, show, and upload/download of manifest objects."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any

from fscas.cli.args import add_filters, existing_folder
from fscas.cli.common import add_scale_options, manifest_of, open_store_of, read_manifest, scaled, store_arg
from fscas.cli.output import emit_json, progress_bar, warn
from fscas.errors import ConfigError, SnapshotError
from fscas.files import atomic_write_bytes

if TYPE_CHECKING:
    from fscas.manifests import ManifestDiff

__all__ = ["add_manifest_commands", "add_manifest_transfer_commands"]


def add_manifest_commands(groups: Any) -> Any:
    """Register `fscas manifest` and its subcommands; return its subparsers for more commands."""
    group = groups.add_parser("manifest", help="snapshot, diff, merge and show manifests")
    sub = group.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("snapshot", help="hash a folder into a manifest")
    p.add_argument("root", type=existing_folder, help="the folder to snapshot")
    p.add_argument("-o", "--output", help="write the manifest here (default: stdout)")
    add_filters(p)
    p.add_argument("--no-cache", action="store_true", help="do not use or update the hash cache")
    p.add_argument("--diff", default=None, metavar="MANIFEST",
                   help="write only the files whose content differs from MANIFEST's or that it lacks "
                        "(a local manifest file, or a store key with --store)")
    add_scale_options(p)
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary (output file, hash, counts, skipped files); needs -o")
    _store_options(p)
    p.set_defaults(handler=_snapshot, local=True)

    p = sub.add_parser("diff", help="compare a folder with a manifest")
    p.add_argument("root", type=existing_folder, help="the folder to compare")
    p.add_argument("manifest", help="a local manifest file, or a manifest key in the store (Manifests/...)")
    add_filters(p)
    p.add_argument("--exact", action="store_true", help="compare hashes, not size and mtime")
    p.add_argument("--no-cache", action="store_true", help="with --exact, hash every file (no hash cache)")
    p.add_argument("--exit-code", action="store_true",
                   help="exit 1 when there are differences, 0 when there are none (like git diff --exit-code)")
    p.add_argument("--json", action="store_true", help="print {new, modified, deleted} as JSON")
    _store_options(p)
    p.set_defaults(handler=_diff, local=True)

    p = sub.add_parser("merge", help="merge manifests, later ones win")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="local manifest files, earliest first")
    p.add_argument("-o", "--output", required=True, help="write the merged manifest here")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=_merge, local=True)

    p = sub.add_parser("show", help="print a manifest's entries")
    p.add_argument("file", metavar="MANIFEST",
                   help="a local manifest file, or a manifest key in the store (Manifests/...)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    _store_options(p)
    p.set_defaults(handler=_show, local=True)
    return sub


def _store_options(p: argparse.ArgumentParser) -> None:
    """Where a manifest given as a store key is read from (the `--json` flag is the command's own)."""
    p.add_argument("--store", default=None, metavar="URL",
                   help="the store a MANIFEST key is read from (default: $FSCAS_STORE or a local folder store)")
    for flag, text in (("--endpoint-url", "the store's endpoint"), ("--profile", "the AWS profile"),
                       ("--region", "the S3 region")):
        p.add_argument(flag, default=None, help=f"{text}, as the aws CLI's flag")


def _snapshot(args: argparse.Namespace) -> int:
    if args.json and not args.output:
        raise ConfigError("--json prints a summary; give -o FILE for the manifest itself")
    skipped: list[dict[str, str]] = []
    def on_skip(rel: str, why: str) -> None:
        skipped.append({"path": rel, "reason": why})
        if not args.json:
            warn(f"skipped {rel}: {why}")
    if not (args.no_cache or args.scheduler or args.processes) and (warm := _unchanged(args, on_skip)) is not None:
        return _snapshot_written(args, *warm, skipped)
    from fscas.manifests import encode, manifest_hash, snapshot

    with scaled(args) as spread:
        if spread is not None:
            from fscas import distributed

            m = distributed.snapshot(args.root, include=args.include, exclude=args.exclude, **spread)
        else:
            bar = progress_bar("hashing")
            with bar if bar is not None else contextlib.nullcontext():
                m = snapshot(args.root, include=args.include, exclude=args.exclude,
                             hash_cache=False if args.no_cache else None, on_skip=on_skip, progress=bar)
    if not m.paths:
        raise SnapshotError(f"{args.root}: no files to snapshot (an empty manifest cannot be read back)")
    data = encode(m)
    return _snapshot_written(args, data, manifest_hash(data), len(m.paths), m.total_size, skipped)


def _unchanged(args: argparse.Namespace, on_skip: Any) -> tuple[bytes, str, int, int] | None:
    """The stored manifest bytes when nothing under the root changed since its last snapshot
    (`fscas.manifests.snapstate`): no attrs, no hash cache, no walk; else None."""
    from fscas.manifests import snapstate
    from fscas.manifests.cachedir import default_cache_dir

    root_abs = os.path.abspath(args.root)
    path = snapstate.state_path(default_cache_dir(), root_abs, args.include, args.exclude)
    found = snapstate.load(path, root_abs, args.include, args.exclude)
    if found is None:
        return None
    for rel, why in found.skipped:
        on_skip(rel, why)
    return found.data, found.hash, found.files, found.total_size


def _snapshot_written(args: argparse.Namespace, data: bytes, digest: str, files: int, total_size: int,
                      skipped: list[dict[str, str]]) -> int:
    if args.diff:
        from fscas.manifests import Manifest, decode, encode, manifest_hash

        before = {p.path: (p.hash, p.size) for p in manifest_of(args, args.diff).paths}
        changed = [p for p in decode(data).paths if before.get(p.path) != (p.hash, p.size)]
        if not changed:  # an empty manifest cannot be read back: say so, write nothing
            if args.json:
                emit_json({"root": args.root, "output": None, "hash": None, "files": 0, "total_size": 0,
                           "skipped": skipped, "diff": args.diff})
            else:
                warn(f"no file under {args.root} differs from {args.diff}: nothing written")
            return 0
        m = Manifest.from_paths(changed)
        data = encode(m)
        digest, files, total_size = manifest_hash(data), len(m.paths), m.total_size
    if args.output:
        atomic_write_bytes(args.output, data, durable=False)  # re-made by running snapshot again
    elif not args.json:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    if args.json:
        summary: dict[str, Any] = {"root": args.root, "output": args.output, "hash": digest,
                                   "files": files, "total_size": total_size, "skipped": skipped}
        emit_json(summary)
    return 0


def _diff_json(d: ManifestDiff) -> dict[str, list[str]]:
    return {"new": list(d.new), "modified": list(d.modified), "deleted": list(d.deleted)}


def _diff(args: argparse.Namespace) -> int:
    from fscas.manifests import diff_tree

    m = manifest_of(args, args.manifest)
    d = diff_tree(args.root, m, exact=args.exact, include=args.include, exclude=args.exclude,
                  hash_cache=False if args.no_cache else None,
                  on_skip=None if args.json else (lambda rel, why: warn(f"skipped {rel}: {why}")))
    if args.json:
        emit_json(_diff_json(d))
    else:
        for mark, paths in (("+", d.new), ("M", d.modified), ("-", d.deleted)):
            for p in paths:
                print(f"{mark} {p}")
    return 1 if args.exit_code and (d.new or d.modified or d.deleted) else 0


def _merge(args: argparse.Namespace) -> int:
    from fscas.manifests import encode, manifest_hash, merge

    m = merge(*(read_manifest(p) for p in args.manifests))
    data = encode(m)
    atomic_write_bytes(args.output, data)
    if args.json:
        emit_json({"output": args.output, "hash": manifest_hash(data), "files": len(m.paths),
                   "total_size": m.total_size})
    else:
        print(f"{args.output}: {len(m.paths)} files, {m.total_size} bytes, hash {manifest_hash(data)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    m = manifest_of(args, args.file)
    if args.json:
        emit_json({"hashAlg": m.hash_alg, "manifestVersion": m.version, "totalSize": m.total_size,
                   "paths": [{"path": p.path, "hash": p.hash, "size": p.size, "mtime": p.mtime}
                             for p in m.paths]})
        return 0
    for p in m.paths:
        print(f"{p.hash}  {p.size:>12}  {p.path}")
    print(f"{len(m.paths)} files, {m.total_size} bytes", file=sys.stderr)
    return 0


def add_manifest_transfer_commands(manifest_group: Any) -> None:
    """Register `manifest upload|download` in the `manifest` group."""
    p = manifest_group.add_parser("upload", help="put a manifest file at Manifests/[PREFIX/]NAME")
    p.add_argument("file", help="a local manifest file; its name becomes the key's last part")
    p.add_argument("--prefix", default="", help="folder under Manifests/")
    store_arg(p)
    p.set_defaults(handler=_manifest_upload)
    p = manifest_group.add_parser("download", help="get a manifest object into a file")
    p.add_argument("key", help="the manifest's key in the store (Manifests/...)")
    p.add_argument("-o", "--output", required=True, help="the file to write (the stored bytes, unchanged)")
    store_arg(p)
    p.set_defaults(handler=_manifest_download)


def _manifest_upload(args: argparse.Namespace) -> int:
    from fscas.keys import MANIFESTS

    m = read_manifest(args.file)
    name = os.path.basename(args.file)
    key = "/".join(x for x in (MANIFESTS, args.prefix.strip("/"), name) if x)
    with open_store_of(args) as store:
        digest = store.put_manifest(key, m, if_absent=False)
    if args.json:
        emit_json({"key": key, "hash": digest})
    else:
        print(f"{key} {digest}")
    return 0


def _manifest_download(args: argparse.Namespace) -> int:
    from fscas.files import atomic_write_bytes
    from fscas.manifests import decode, manifest_hash
    from fscas.runner import run_sync

    with open_store_of(args) as store:
        data = run_sync(store.aio.backend.get(args.key))  # the stored bytes, not a re-encoding
    m = decode(data)
    atomic_write_bytes(args.output, data)
    if args.json:
        emit_json({"key": args.key, "output": args.output, "hash": manifest_hash(data), "files": len(m.paths)})
    else:
        print(f"{args.output}: {len(m.paths)} files, hash {manifest_hash(data)}")
    return 0
