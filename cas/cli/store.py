"""`fscas push|pull|gc|verify|mount`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fscas.cli.args import add_filters, existing_folder, non_negative_float, size
from fscas.cli.common import (
    add_location_options,
    add_scale_options,
    add_sync_options,
    download_manifest,
    filtered,
    flag_options,
    is_store_key,
    locations_from,
    not_shared,
    open_store_of,
    read_manifest,
    report_transfer,
    scaled,
    store_arg,
    store_url_of,
    transfer,
    without_shared,
)
from fscas.cli.output import emit_json, warn

if TYPE_CHECKING:
    from fscas.manifests import Manifest

__all__ = ["add_store_commands"]


def add_store_commands(groups: Any) -> None:
    """Register the store commands (`fscas.cli.COMMANDS["store"]`)."""
    p = groups.add_parser("push", help="snapshot a folder, upload what is missing, write its input manifest")
    p.add_argument("root", type=existing_folder, help="the folder to snapshot and push")
    _add_ids(p)
    p.add_argument("-o", "--output", help="also write the manifest file here")
    p.add_argument("--dry-run", action="store_true",
                   help="snapshot and say what the store lacks; upload and write nothing")
    add_filters(p)
    add_location_options(p, typed=True)
    add_scale_options(p)
    store_arg(p)
    p.set_defaults(handler=_push)

    p = groups.add_parser("pull", help="materialise a manifest (a store key or a local file) into a folder")
    p.add_argument("manifest", help="a key under the store (Manifests/...) or a local manifest file")
    p.add_argument("dest", help="the folder to write into (created if missing)")
    add_sync_options(p)
    add_scale_options(p)
    store_arg(p)
    p.set_defaults(handler=_pull)

    p = groups.add_parser("gc", help="list (and with --delete remove) Data objects no manifest references")
    p.add_argument("--delete", action="store_true", help="delete them (default: only list them)")
    p.add_argument("--dry-run", action="store_true", help="only list what --delete would remove (the default)")
    p.add_argument("--grace", type=non_negative_float, default=86400.0, metavar="SECONDS",
                   help="keep objects younger than this (uploads write data before manifests; default 86400: a day)")
    store_arg(p)
    p.set_defaults(handler=_gc)

    p = groups.add_parser("verify", help="read back and hash every object manifests reference; report what is wrong")
    p.add_argument("manifests", nargs="*", metavar="MANIFEST",
                   help="manifest keys in the store (Manifests/...) or local manifest files "
                        "(default: every Data object in the store)")
    store_arg(p)
    p.set_defaults(handler=_verify)

    p = groups.add_parser("mount", help="serve a stored snapshot read-only through FUSE, fetching files on first read")
    p.add_argument("manifest", metavar="MANIFEST", help="a manifest key in the store, or a local manifest file")
    p.add_argument("mountpoint", metavar="MOUNTPOINT", help="an empty folder to mount it on")
    p.add_argument("legacy", nargs="?", default=None, help=argparse.SUPPRESS)  # the old STORE MANIFEST MOUNTPOINT
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="where verified objects are kept (default: $XDG_CACHE_HOME/fscas/objects)")
    p.add_argument("--cache-size", type=size, default=10 * 2**30, metavar="SIZE",
                   help="budget of the object cache, least recently used first out (default 10GiB)")
    store_arg(p)
    p.set_defaults(handler=_mount)


def _add_ids(p: argparse.ArgumentParser) -> None:
    p.add_argument("--farm-id", default="farm-local",
                   help="Deadline farm id: the input manifest's key is Manifests/FARM/QUEUE/Inputs/... "
                        "(default farm-local)")
    p.add_argument("--queue-id", default="queue-local", help="Deadline queue id (default queue-local)")


def _push(args: argparse.Namespace) -> int:
    from fscas.errors import SnapshotError
    from fscas.files import atomic_write_bytes
    from fscas.keys import input_manifest_key
    from fscas.manifests import encode, snapshot
    from fscas.pathmapping import innermost
    from fscas.pipeline import push_tree
    from fscas.runner import run_sync

    skipped: list[dict[str, str]] = []

    def on_skip(rel: str, why: str) -> None:
        skipped.append({"path": rel, "reason": why})
        if not args.json:
            warn(f"skipped {rel}: {why}")

    locations = locations_from(args)
    if args.dry_run:
        return _push_dry_run(args, locations, on_skip, skipped)
    home = innermost(locations, os.path.abspath(args.root))
    metadata = {"file-system-location-name": home.name} if home is not None and home.type == "LOCAL" else None
    with scaled(args) as spread:
        if spread is not None:
            return _push_spread(args, spread)
        with open_store_of(args) as store:  # a bad --store is reported before any hashing
            shared: list[str] = []

            def prepare(full: Manifest) -> Manifest:  # after the snapshot, before the manifest is committed
                m, shared[:] = without_shared(full, args.root, locations, quiet=args.json)
                if not m.paths:
                    raise SnapshotError(f"{args.root}: no files to push" + (" (all under SHARED locations)"
                                                                             if shared else ""))
                if args.output:
                    atomic_write_bytes(args.output, encode(m), durable=False)
                return m

            key = input_manifest_key(args.farm_id, args.queue_id, os.path.abspath(args.root))
            m, digest, summary = transfer(args, "uploading", lambda bar: run_sync(push_tree(
                store.aio, args.root, key,
                lambda on_hashed: snapshot(args.root, include=args.include, exclude=args.exclude, on_skip=on_skip,
                                           on_hashed=on_hashed),
                sendable=not_shared(args.root, locations), prepare=prepare, metadata=metadata, callback=bar)))
            report_transfer(args, summary, store=store.url, key=key, hash=digest, total_files=len(m.paths),
                    total_size=m.total_size, shared_skipped=shared, snapshot_skipped=skipped)
    return 0


def _push_dry_run(args: argparse.Namespace, locations: list[Any], on_skip: Callable[[str, str], None],
                  skipped: list[dict[str, str]]) -> int:
    """What `push` would send and write: the snapshot, and which of its objects the store lacks."""
    from fscas.keys import input_manifest_key
    from fscas.manifests import snapshot

    with open_store_of(args) as store:
        m, shared = without_shared(snapshot(args.root, include=args.include, exclude=args.exclude, on_skip=on_skip),
                                    args.root, locations, quiet=args.json)
        lacking = store.missing([p.hash for p in m.paths])
        sizes = {p.hash: p.size for p in m.paths}
        key = input_manifest_key(args.farm_id, args.queue_id, os.path.abspath(args.root))
        found = {"store": store.url, "key": key, "dry_run": True, "files": len(lacking),
                 "bytes": sum(sizes[d] for d in lacking), "total_files": len(m.paths), "total_size": m.total_size,
                 "shared_skipped": shared, "snapshot_skipped": skipped}
    if args.json:
        emit_json(found)
    else:
        print(f"would upload {found['files']} objects, {found['bytes']} bytes of {len(m.paths)} files "
              f"({m.total_size} bytes) and write {key}; nothing was sent (--dry-run)", file=sys.stderr)
    return 0


def _push_spread(args: argparse.Namespace, spread: dict[str, Any]) -> int:
    from fscas import distributed
    from fscas.errors import ConfigError
    from fscas.files import atomic_write_bytes
    from fscas.manifests import encode

    if args.file_system_location or args.file_system_locations:
        raise ConfigError("--file-system-location is not supported with --scheduler or --processes yet")
    url = store_url_of(args)
    key, digest, summary = distributed.push(args.root, url, farm_id=args.farm_id, queue_id=args.queue_id,
                                            include=args.include, exclude=args.exclude, **spread)
    with open_store_of(args) as store:
        m = store.get_manifest(key)
        if args.output:
            atomic_write_bytes(args.output, encode(m), durable=False)
        report_transfer(args, summary, store=store.url, key=key, hash=digest, total_files=len(m.paths),
                        total_size=m.total_size)
    return 0


def _pull(args: argparse.Namespace) -> int:
    if args.dry_run:  # deciding is a stat per file: no need to spread it
        return download_manifest(args, from_store=not os.path.isfile(args.manifest))
    with scaled(args) as spread:
        if spread is None:
            return download_manifest(args, from_store=not os.path.isfile(args.manifest))
        from fscas import distributed

        source: Any = read_manifest(args.manifest) if os.path.isfile(args.manifest) else args.manifest
        if args.include or args.exclude:
            if isinstance(source, str):
                with open_store_of(args) as store:
                    source = store.get_manifest(source)
            source = filtered(source, args)
        url = store_url_of(args)
        summary = distributed.pull(source, args.dest, url, conflict=args.conflict, checksum=args.checksum, **spread)
        with open_store_of(args) as store:
            report_transfer(args, summary, download=True, store=store.url, dest=args.dest)
    return 0


def _mount(args: argparse.Namespace) -> int:
    from fscas.content import ContentCache
    from fscas.fs import FscasFileSystem, mount

    if args.legacy is not None:  # fscas mount STORE MANIFEST MOUNTPOINT, before --store
        if args.store:
            from fscas.errors import ConfigError

            raise ConfigError("mount takes MANIFEST MOUNTPOINT with --store URL; not a store before them too")
        warn("'fscas mount STORE MANIFEST MOUNTPOINT' is deprecated: "
             "use 'fscas mount MANIFEST MOUNTPOINT --store STORE'")
        args.store, args.manifest, args.mountpoint = args.manifest, args.mountpoint, args.legacy
    fs = FscasFileSystem(store_url_of(args), args.manifest,
                         cache=ContentCache(args.cache_dir, max_bytes=args.cache_size), skip_instance_cache=True,
                         concurrency=args.concurrency, **flag_options(args))
    files = len(fs.manifest.paths)  # a bad store or manifest is reported before anything is mounted
    print(f"fscas: {files} files of {fs.store.url} at {args.mountpoint}; unmount with "
          f"`fusermount -u {args.mountpoint}` or Ctrl-C", file=sys.stderr, flush=True)
    try:
        mount(fs, args.mountpoint)
    finally:
        fs.store.close()
    return 0


def _gc(args: argparse.Namespace) -> int:
    with open_store_of(args) as store:
        report = store.gc(delete=args.delete and not args.dry_run, grace_seconds=args.grace)
    if args.json:
        emit_json({"store": store.url, "manifests": report.manifests, "referenced": report.referenced,
                   "unreferenced": list(report.unreferenced), "unreferenced_bytes": report.unreferenced_bytes,
                   "deleted": report.deleted, "kept_for_grace": report.kept_for_grace, "dry_run": args.dry_run})
        return 0
    for key in report.unreferenced:
        print(key)
    verb = "deleted" if report.deleted else "unreferenced (run with --delete to remove)"
    print(f"{len(report.unreferenced)} objects, {report.unreferenced_bytes} bytes {verb}; "
          f"{report.kept_for_grace} unreferenced objects younger than --grace {args.grace:g} s kept; "
          f"{report.manifests} manifests reference {report.referenced} digests", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    with open_store_of(args) as store:
        manifests = [store.get_manifest(m) if is_store_key(m) else read_manifest(m) for m in args.manifests] or None
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
