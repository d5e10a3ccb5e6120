"""`fscas outputs list|download|sync`: a Deadline job's task outputs, the way `deadline job download-output`
fetches them, and a whole queue's, as `deadline queue sync-output` does."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fscas.cli.args import add_filters, non_negative_float
from fscas.cli.common import add_location_options, locations_from, open_store_of, store_arg, transfer
from fscas.cli.output import emit_json

__all__ = ["add_outputs_commands"]


def _ids(p: argparse.ArgumentParser) -> None:
    p.add_argument("--farm-id", required=True, help="the farm of the job")
    p.add_argument("--queue-id", required=True, help="the queue of the job")
    p.add_argument("--job-id", required=True, help="the job")
    p.add_argument("--step-id", default=None, help="only this step's outputs")
    p.add_argument("--task-id", default=None, help="only this task's outputs (with --step-id)")
    p.add_argument("--keep-earlier-roots", action="store_true",
                   help="per task, keep the latest run of each asset root (Deadline keeps only the latest run, "
                        "dropping roots it did not write)")


def add_outputs_commands(groups: Any) -> None:
    """Register `fscas outputs list` and `fscas outputs download`."""
    group = groups.add_parser("outputs", help="list or download a Deadline job's task outputs")
    sub = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("list", help="every output manifest of a job, step or task, and which ones are selected")
    _ids(p)
    store_arg(p)
    p.set_defaults(handler=_list)

    p = sub.add_parser("download", help="download the selected outputs into local folders, verified")
    _ids(p)
    _placement(p)
    p.add_argument("--since", default=None, metavar="STATE_FILE",
                   help="incremental: download only what the state file does not record yet, then update it")
    p.add_argument("--conflict", choices=["skip", "overwrite", "create-copy"], default="skip",
                   help="what to do with a local file that is already there (default: skip)")
    add_filters(p)
    store_arg(p)
    p.set_defaults(handler=_download)

    p = sub.add_parser("sync", help="every job's new outputs in a queue, incrementally (deadline queue sync-output)")
    p.add_argument("--farm-id", required=True, help="the farm of the queue")
    p.add_argument("--queue-id", required=True, help="the queue")
    p.add_argument("--checkpoint-dir", required=True, metavar="DIR",
                   help="where the queue's checkpoint lives (one file per queue, rewritten atomically)")
    p.add_argument("--bootstrap-lookback-minutes", type=non_negative_float, default=0.0, metavar="N",
                   help="first run only: take the outputs of the last N minutes (default 0: from now on)")
    p.add_argument("--dry-run", action="store_true", help="say what would be downloaded; write nothing")
    _placement(p)
    p.add_argument("--conflict", choices=["skip", "overwrite", "create-copy"], default="overwrite",
                   help="a local file that differs: replace it (overwrite, the default: a rerun's output "
                        "replaces the earlier one), keep it (skip) or download beside it (create-copy)")
    store_arg(p)
    p.set_defaults(handler=_sync)


def _placement(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path-mapping-rules", default=None, metavar="FILE",
                   help="Deadline's path-mapping rules JSON (pathmapping-1.0), applied to each file's path")
    p.add_argument("--root", action="append", default=[], metavar="ORIGINAL=LOCAL",
                   help="download the asset root ORIGINAL into LOCAL (repeatable; wins over every other mapping)")
    add_location_options(p, typed=False)
    p.add_argument("--ignore-storage-profiles", action="store_true",
                   help="do not map roots by their file-system location name")
    p.add_argument("--original-roots", action="store_true",
                   help="write roots nothing else maps to the paths they were recorded at (same OS only)")


def _placed(args: argparse.Namespace) -> dict[str, Any]:
    """The placement options as `download_outputs`/`sync_outputs` keywords."""
    from fscas.errors import ConfigError
    from fscas.pathmapping import PathMappingRules

    roots = {}
    for item in args.root:
        original, sep, local = item.rpartition("=")
        if not sep or not original or not local:
            raise ConfigError(f"--root {item!r}: expected ORIGINAL=LOCAL")
        roots[original] = local
    rules = PathMappingRules.load(args.path_mapping_rules) if args.path_mapping_rules else None
    locations = {} if args.ignore_storage_profiles else {loc.name: loc.path for loc in locations_from(args)}
    return {"dest_for_root": roots or None, "path_mapping": rules, "file_system_locations": locations or None,
            "original_roots": args.original_roots}


def _scope(args: argparse.Namespace) -> dict[str, Any]:
    if args.task_id and not args.step_id:  # a task id is only unique within its step (Deadline refuses it too)
        from fscas.errors import ConfigError

        raise ConfigError("--task-id needs --step-id: a task is named within its step")
    return {"step_id": args.step_id, "task_id": args.task_id}


def _list(args: argparse.Namespace) -> int:
    from fscas.manifests import select_outputs

    with open_store_of(args) as store:
        outputs = store.output_manifests(args.farm_id, args.queue_id, args.job_id, **_scope(args))
    selected = {o.key for o in select_outputs(outputs, keep_earlier_roots=args.keep_earlier_roots)}
    rows = [_row(o, o.key in selected) for o in sorted(outputs, key=lambda o: o.key)]
    if args.json:
        emit_json({"outputs": rows})
        return 0
    table = [("", "STEP/TASK", "SESSION ACTION", "TIME", "FILES", "BYTES", "ASSET ROOT")] + [
        ("*" if r["selected"] else "", f"{r['step']}/{r['task'] or '-'}", r["session_action"], r["time"],
         str(r["files"]), str(r["bytes"]), r["asset_root"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(6)]
    for row in table:
        cells = [c.rjust(w) if i in (4, 5) else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))]
        print("  ".join([*cells, row[6]]))
    print(f"{len(rows)} output manifests, {len(selected)} selected (*)", file=sys.stderr)
    return 0


def _row(o: Any, selected: bool) -> dict[str, Any]:
    parts = o.key.split("/")  # Manifests/farm/queue/job/step[/task]/<ISO>_<sessionAction>/<hash>_output
    when, _, action = parts[-2].partition("_")
    task = parts[5] if len(parts) == 8 else None
    return {"key": o.key, "step": parts[4], "task": task, "session_action": action, "time": when,
            "last_modified": o.last_modified.isoformat(), "asset_root": o.asset_root,
            "file_system_location_name": o.file_system_location_name, "files": len(o.manifest.paths),
            "bytes": o.manifest.total_size, "selected": selected}


def _download(args: argparse.Namespace) -> int:
    placed = _placed(args)
    with open_store_of(args) as store:
        summary = transfer(args, "downloading", lambda bar: store.download_outputs(
            args.farm_id, args.queue_id, args.job_id, **_scope(args), **placed,
            keep_earlier_roots=args.keep_earlier_roots, since=args.since, conflict=args.conflict,
            include=args.include, exclude=args.exclude, callback=bar))
    if args.json:
        emit_json(summary.as_dict())
        return 0
    for root, dests in summary.destinations.items():
        print(f"{root} -> {', '.join(dests)}")
    print(f"{summary.manifests} manifests ({summary.unchanged} unchanged since the last run): {summary.files} files, "
          f"{summary.bytes} bytes; {summary.skipped_files} skipped; {summary.seconds:.2f} s", file=sys.stderr)
    return 0


def _sync(args: argparse.Namespace) -> int:
    placed = _placed(args)

    def on_job(job: Any) -> None:  # --json: a line per job as it lands, as Deadline's --output json streams
        if args.json:
            emit_json({"event": "job", **job.as_dict()})
        else:
            verb = "would download" if args.dry_run else "downloaded"
            print(f"{job.job_id}: {verb} {job.files} files, {job.bytes} bytes of {job.manifests} new output manifests"
                  f"{' to ' + ', '.join(job.destinations) if job.destinations else ''}", flush=True)

    with open_store_of(args) as store:
        summary = transfer(args, "downloading", lambda bar: store.sync_outputs(
            args.farm_id, args.queue_id, checkpoint_dir=args.checkpoint_dir,
            bootstrap_lookback_minutes=args.bootstrap_lookback_minutes, dry_run=args.dry_run, conflict=args.conflict,
            callback=bar, on_job=on_job, **placed))
    if args.json:
        emit_json({"event": "summary", **summary.as_dict()})
        return 0
    totals = summary.as_dict()
    print(f"{len(summary.jobs)} jobs with new outputs: {totals['files']} files, {totals['bytes']} bytes; "
          f"{summary.unchanged} output manifests already synced"
          f"{f', {summary.bootstrapped} older than the lookback recorded' if summary.bootstrapped else ''}"
          f"{' (--dry-run: nothing written)' if summary.dry_run else ''}; {summary.seconds:.2f} s", file=sys.stderr)
    return 0
