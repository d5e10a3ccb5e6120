"""`fscas copy SRC DST`: manifests and the Data they name, from one store to another, verified."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fscas.cli.args import positive_int
from fscas.cli.common import add_scale_options, scaled, transfer
from fscas.cli.output import emit_json, warn

__all__ = ["add_copy_commands"]

_NAMED = 20  # refusals named one by one on stderr; the rest counted (--json lists them all)


def add_copy_commands(groups: Any) -> None:
    """Register `fscas copy`."""
    p = groups.add_parser("copy", help="copy manifests and their data from one store to another, verified, "
                                       "resumable (data before manifests, safe beside a gc)")
    p.add_argument("source", metavar="SRC_STORE", help="the store to copy from (URL with its options, or a folder)")
    p.add_argument("destination", metavar="DST_STORE", help="the store to copy to")
    p.add_argument("--manifest", action="append", default=[], metavar="KEY",
                   help="a manifest key in the source (Manifests/...; repeatable)")
    p.add_argument("--farm-id", default=None, help="every manifest of this farm (with --queue-id: of that queue)")
    p.add_argument("--queue-id", default=None, help="every manifest of this queue (needs --farm-id)")
    p.add_argument("--job-id", default=None, help="the outputs of this job (needs --farm-id and --queue-id)")
    p.add_argument("--kind", choices=["input", "output"], default=None,
                   help="only input or only output manifests of the selection")
    p.add_argument("--all", action="store_true", dest="everything", help="every manifest in the source")
    p.add_argument("--since", default=None, metavar="STATE",
                   help="incremental: skip the manifests this state file records; rewrite it atomically after")
    p.add_argument("--dry-run", action="store_true",
                   help="say which manifests and how many objects would be copied; write nothing")
    p.add_argument("--json", action="store_true", help="print only a JSON summary on stdout")
    p.add_argument("--concurrency", type=positive_int, default=None, metavar="N",
                   help="object copies in flight at once (default 32; 8 for a folder store)")
    add_scale_options(p)
    p.set_defaults(handler=_copy)


def _copy(args: argparse.Namespace) -> int:
    from fscas.blocking import open_store

    with (open_store(args.source, concurrency=args.concurrency) as src,
          open_store(args.destination, concurrency=args.concurrency) as dst, scaled(args) as spread):
        summary = transfer(args, "copying", lambda bar: src.copy_to(
            dst, manifests=args.manifest, farm_id=args.farm_id, queue_id=args.queue_id, job_id=args.job_id,
            kind=args.kind, everything=args.everything, since=args.since, dry_run=args.dry_run, callback=bar,
            **(spread or {})))
    if args.json:
        emit_json(summary.as_dict())
        return 0 if summary.ok else 1
    for key in summary.manifests:
        print(key)
    for key, why in summary.bad_objects[:_NAMED]:
        warn(f"not copied: source object {key}: {why}")
    for key, why in summary.refused[:_NAMED]:
        warn(f"manifest not copied: {key}: {why}")
    if len(summary.refused) + len(summary.bad_objects) > 2 * _NAMED:
        warn("more refusals than shown: --json lists them all")
    verb = "would copy" if summary.dry_run else "copied"
    tail = "; nothing was written (--dry-run)" if summary.dry_run else f"; {summary.seconds:.2f} s"
    print(f"{verb} {len(summary.manifests)} manifests, {summary.objects} objects, {summary.bytes} bytes; "
          f"{summary.unchanged} manifests already there, {summary.skipped_objects} objects already there"
          f"{', ' + str(len(summary.refused)) + ' manifests refused' if summary.refused else ''}{tail}",
          file=sys.stderr)
    return 0 if summary.ok else 1
