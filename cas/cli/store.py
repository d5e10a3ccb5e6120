"""`fscas push|pull|gc|verify|mount`, `fscas attachment upload|download`."""

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
    flag_options,
    is_store_key,
    locations_from,
    open_store_of,
    read_manifest,
    scaled,
    store_arg,
    store_url_of,
    transfer,
)
from fscas.cli.output import emit_json, warn

if TYPE_CHECKING:
    from fscas.blocking import Store
    from fscas.manifests import Manifest
    from fscas.summary import TransferSummary

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
    _add_sync_options(p)
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

    group = groups.add_parser("attachment", help="upload or download the files of a manifest")
    sub = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("upload", help="upload a manifest's files that the store lacks")
    p.add_argument("-m", "--manifest", required=True, action="append",
                   help="the local manifest file whose files to upload (repeatable, each with its --root)")
    p.add_argument("-r", "--root", required=True, type=existing_folder, action="append",
                   help="the folder the manifest's paths are relative to (one per --manifest, in order)")
    p.add_argument("--force-check", action="store_true",
                   help="ignore the existence cache and read back every object the manifest references: "
                        "a missing or corrupt one (bytes not matching its key) is uploaded again")
    add_location_options(p, typed=True)
    store_arg(p)
    p.set_defaults(handler=_attachment_upload)
    p = sub.add_parser("download", help="download manifests' files into folders, verified")
    p.add_argument("-m", "--manifest", required=True, action="append",
                   help="a local manifest file to materialise (repeatable)")
    p.add_argument("-d", "--dest", default=None,
                   help="the folder to write into (created if missing); with --path-mapping-rules, for manifests "
                        "no rule names")
    p.add_argument("--path-mapping-rules", default=None, metavar="FILE",
                   help="Deadline's rules: a manifest whose file name holds the hash of a rule's source path goes "
                        "to its destination (as a session's manifests are named, and `deadline attachment "
                        "download` places them)")
    _add_sync_options(p)
    store_arg(p)
    p.set_defaults(handler=_attachment_download)

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


def _add_sync_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conflict", choices=["skip", "overwrite", "create-copy"], default="skip",
                   help="what to do with a local file that differs from the manifest: keep it and name it "
                        "(skip, the default), replace it (overwrite), or download beside it as 'name (1).ext' "
                        "(create-copy). Identical files are always left alone")
    p.add_argument("--checksum", action="store_true",
                   help="compare local files by hash, not by size and mtime (slower; when mtimes lie)")
    p.add_argument("--dry-run", action="store_true", help="say what would be downloaded; write nothing")
    add_filters(p)


_NAMED = 20  # kept files named one by one on stderr; the rest counted (--json lists them all)


def _report(args: argparse.Namespace, summary: TransferSummary, *, download: bool = False, **extra: Any) -> None:
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
                m, shared[:] = _without_shared(full, args.root, locations, quiet=args.json)
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
                sendable=_not_shared(args.root, locations), prepare=prepare, metadata=metadata, callback=bar)))
            _report(args, summary, store=store.url, key=key, hash=digest, total_files=len(m.paths),
                    total_size=m.total_size, shared_skipped=shared, snapshot_skipped=skipped)
    return 0


def _push_dry_run(args: argparse.Namespace, locations: list[Any], on_skip: Callable[[str, str], None],
                  skipped: list[dict[str, str]]) -> int:
    """What `push` would send and write: the snapshot, and which of its objects the store lacks."""
    from fscas.keys import input_manifest_key
    from fscas.manifests import snapshot

    with open_store_of(args) as store:
        m, shared = _without_shared(snapshot(args.root, include=args.include, exclude=args.exclude, on_skip=on_skip),
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


def _not_shared(root: str, locations: list[Any]) -> Callable[[str], bool]:
    """Whether a manifest path may be sent before the snapshot ends: not under a SHARED location."""
    from fscas.pathmapping import innermost

    if not any(loc.type == "SHARED" for loc in locations):
        return lambda rel: True
    base = os.path.abspath(root)

    def sendable(rel: str) -> bool:
        loc = innermost(locations, os.path.join(base, *rel.split("/")))
        return loc is None or loc.type != "SHARED"
    return sendable


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
        _report(args, summary, store=store.url, key=key, hash=digest, total_files=len(m.paths), total_size=m.total_size)
    return 0


def _without_shared(m: Manifest, root: str, locations: list[Any], *, quiet: bool) -> tuple[Manifest, list[str]]:
    """`m` without the files under SHARED locations (on shared storage: Deadline does not upload them)."""
    from fscas.manifests import Manifest

    sendable = _not_shared(root, locations)
    kept: list[Any] = []
    dropped: list[Any] = []
    for p in m.paths:
        (kept if sendable(p.path) else dropped).append(p)
    if not dropped:
        return m, []
    if not quiet:
        warn(f"{len(dropped)} files under SHARED file-system locations are not uploaded")
    return Manifest.from_paths(kept), [p.path for p in dropped]


def _pull(args: argparse.Namespace) -> int:
    if args.dry_run:  # deciding is a stat per file: no need to spread it
        return _download(args, from_store=not os.path.isfile(args.manifest))
    with scaled(args) as spread:
        if spread is None:
            return _download(args, from_store=not os.path.isfile(args.manifest))
        from fscas import distributed

        source: Any = read_manifest(args.manifest) if os.path.isfile(args.manifest) else args.manifest
        if args.include or args.exclude:
            if isinstance(source, str):
                with open_store_of(args) as store:
                    source = store.get_manifest(source)
            source = _filtered(source, args)
        url = store_url_of(args)
        summary = distributed.pull(source, args.dest, url, conflict=args.conflict, checksum=args.checksum, **spread)
        with open_store_of(args) as store:
            _report(args, summary, download=True, store=store.url, dest=args.dest)
    return 0


def _attachment_upload(args: argparse.Namespace) -> int:
    from fscas.errors import ConfigError
    from fscas.summary import TransferSummary

    if len(args.manifest) != len(args.root):
        raise ConfigError(f"{len(args.manifest)} --manifest but {len(args.root)} --root: give one root per manifest")
    pairs = [(*_without_shared(read_manifest(m), root, locations_from(args), quiet=args.json), root)
             for m, root in zip(args.manifest, args.root, strict=True)]
    with open_store_of(args) as store:
        summaries: list[TransferSummary] = []
        repaired: list[str] = []
        for m, _, root in pairs:
            summaries.append(_upload_one(args, store, m, root, repaired))
        summary = summaries[0] if len(summaries) == 1 else TransferSummary.total(summaries)
        _report(args, summary, store=store.url, shared_skipped=[p for _, shared, _ in pairs for p in shared],
                repaired=sorted(set(repaired)))
    return 0


def _upload_one(args: argparse.Namespace, store: Store, m: Manifest, root: str,
                repaired: list[str]) -> TransferSummary:
    """One manifest's upload; with --force-check, its objects read back and repaired first."""
    fixed: list[str] = []
    if args.force_check:
        report = store.repair(m, root)
        fixed = sorted({*report.missing, *report.corrupt_digests})
        for line in report.corrupt:
            if not args.json:
                warn(f"replaced corrupt object {line}")
    summary = transfer(args, "uploading", lambda bar: store.upload(m, root, callback=bar,
                                                                  use_cache=not args.force_check))
    repaired.extend(fixed)
    if not fixed:
        return summary
    import attrs  # sent by the repair, so the upload found them present: count them where they were sent

    sizes = {p.hash: p.size for p in m.paths}
    sent = sum(sizes.get(d, 0) for d in fixed)
    return attrs.evolve(summary, files=summary.files + len(fixed), bytes=summary.bytes + sent,
                        skipped_files=max(0, summary.skipped_files - len(fixed)),
                        skipped_bytes=max(0, summary.skipped_bytes - sent))


def _attachment_download(args: argparse.Namespace) -> int:
    from fscas.summary import TransferSummary

    placed = _placements(args)
    if len(placed) == 1 and not args.path_mapping_rules:
        args.manifest, args.dest = placed[0]
        return _download(args, from_store=False)
    summaries = []
    with open_store_of(args) as store:
        for manifest, dest in placed:
            m = _filtered(read_manifest(manifest), args)

            def run(bar: Any, m: Manifest = m, dest: str = dest) -> TransferSummary:
                return store.download(m, dest, conflict=args.conflict, checksum=args.checksum, callback=bar,
                                      dry_run=args.dry_run)

            summaries.append(transfer(args, "downloading", run))
        _report(args, TransferSummary.total(summaries), download=True, store=store.url,
                destinations={manifest: dest for manifest, dest in placed},
                **({"dry_run": True} if args.dry_run else {}))
    return 0


def _placements(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(manifest file, destination folder) of each `-m`: the rule whose source path's hash the file's
    name holds (Deadline's `attachment download`), else `-d`, else `./<file name>` as Deadline does."""
    from fscas.errors import ConfigError
    from fscas.manifests import hash_bytes
    from fscas.pathmapping import PathMappingRules

    rules = PathMappingRules.load(args.path_mapping_rules).rules if args.path_mapping_rules else ()
    hashed = [(hash_bytes(r.source_path.encode("utf-8", "surrogatepass")), r.destination_path) for r in rules]
    placed: list[tuple[str, str]] = []
    taken: dict[str, str] = {}
    for manifest in args.manifest:
        name = os.path.basename(manifest)
        dest = next((d for h, d in hashed if h in name), None) or args.dest or os.path.join(os.getcwd(), name)
        if dest in taken:
            raise ConfigError(f"{manifest} and {taken[dest]} both go to {dest}: one destination takes one manifest")
        taken[dest] = manifest
        placed.append((manifest, dest))
    return placed


def _download(args: argparse.Namespace, *, from_store: bool) -> int:
    """Materialise `args.manifest` (a key in the store, or a local file) into `args.dest`."""
    with open_store_of(args) as store:
        m = _filtered(store.get_manifest(args.manifest) if from_store else read_manifest(args.manifest), args)
        summary = transfer(args, "downloading", lambda bar: store.download(
            m, args.dest, conflict=args.conflict, checksum=args.checksum, callback=bar, dry_run=args.dry_run))
        _report(args, summary, download=True, store=store.url, dest=args.dest,
                **({"dry_run": True} if args.dry_run else {}))
    return 0


def _filtered(m: Manifest, args: argparse.Namespace) -> Manifest:
    """The manifest's files that `--include`/`--exclude` keep (Deadline's `download-output --include`)."""
    if not (args.include or args.exclude):
        return m
    from fscas.manifests import GlobFilter

    return GlobFilter.from_globs(args.include, args.exclude).kept(m)


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
                         **flag_options(args))
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
