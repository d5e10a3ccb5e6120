"""`fscas attachment upload|download`: the files of local manifest files, as Deadline's `attachment` commands."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from fscas.cli.args import existing_folder
from fscas.cli.common import (
    add_location_options,
    add_sync_options,
    download_manifest,
    filtered,
    locations_from,
    open_store_of,
    read_manifest,
    report_transfer,
    store_arg,
    transfer,
    without_shared,
)
from fscas.cli.output import warn

if TYPE_CHECKING:
    from fscas.blocking import Store
    from fscas.manifests import Manifest
    from fscas.summary import TransferSummary

__all__ = ["add_attachment_commands"]


def add_attachment_commands(groups: Any) -> None:
    """Register `fscas attachment upload` and `fscas attachment download`."""
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
    add_sync_options(p)
    store_arg(p)
    p.set_defaults(handler=_attachment_download)


def _attachment_upload(args: argparse.Namespace) -> int:
    from fscas.errors import ConfigError
    from fscas.summary import TransferSummary

    if len(args.manifest) != len(args.root):
        raise ConfigError(f"{len(args.manifest)} --manifest but {len(args.root)} --root: give one root per manifest")
    pairs = [(*without_shared(read_manifest(m), root, locations_from(args), quiet=args.json), root)
             for m, root in zip(args.manifest, args.root, strict=True)]
    with open_store_of(args) as store:
        summaries: list[TransferSummary] = []
        repaired: list[str] = []
        for m, _, root in pairs:
            summaries.append(_upload_one(args, store, m, root, repaired))
        summary = summaries[0] if len(summaries) == 1 else TransferSummary.total(summaries)
        report_transfer(args, summary, store=store.url, shared_skipped=[p for _, shared, _ in pairs for p in shared],
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
        return download_manifest(args, from_store=False)
    summaries = []
    with open_store_of(args) as store:
        for manifest, dest in placed:
            m = filtered(read_manifest(manifest), args)

            def run(bar: Any, m: Manifest = m, dest: str = dest) -> TransferSummary:
                return store.download(m, dest, conflict=args.conflict, checksum=args.checksum, callback=bar,
                                      dry_run=args.dry_run)

            summaries.append(transfer(args, "downloading", run))
        report_transfer(args, TransferSummary.total(summaries), download=True, store=store.url,
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
