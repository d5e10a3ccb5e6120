"""`fscas session start|finish`: the worker's half of job attachments around one task, for any
scheduler that runs a command per task (Slurm, Dask, OpenCue, a shell loop), as Deadline's worker
agent does it with `AssetSync.sync_inputs` / `sync_outputs`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fscas.cli.common import add_location_options, locations_from, open_store_of, store_arg, transfer
from fscas.cli.output import emit_json

__all__ = ["add_session_commands"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--attachments", required=True, metavar="FILE",
                   help="the job's attachments document (Deadline's {\"manifests\": [...], \"fileSystem\": ...})")
    p.add_argument("--session-dir", required=True, metavar="DIR", help="the task's session folder")
    p.add_argument("--farm-id", required=True, help="the job's farm")
    p.add_argument("--queue-id", required=True, help="the job's queue")
    p.add_argument("--job-id", required=True, help="the job")
    add_location_options(p, typed=True)
    store_arg(p)


def add_session_commands(groups: Any) -> None:
    """Register `fscas session start` and `fscas session finish`."""
    group = groups.add_parser("session", help="a worker's job-attachment steps around a task: inputs in, outputs up")
    sub = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("start", help="materialise a job's inputs in a session folder; write its path-mapping rules")
    _common(p)
    p.add_argument("--step-dependency", action="append", default=[], metavar="STEP_ID",
                   help="lay this step's outputs over the inputs (repeatable)")
    p.add_argument("--write-path-mapping-rules", default=None, metavar="FILE",
                   help="write Deadline's path-mapping rules JSON (pathmapping-1.0) for the task command here")
    p.add_argument("--group", default=None, metavar="GROUP",
                   help="make the session's files readable and writable by this group (the job user's)")
    p.add_argument("--vfs", action="store_true",
                   help="mount each root lazily (files fetched on first read, writes kept locally) instead of "
                        "downloading it, Deadline's VIRTUAL file system; session finish unmounts")
    p.set_defaults(handler=_start)
    p = sub.add_parser("finish", help="upload what the task wrote under its output folders; write output manifests")
    _common(p)
    p.add_argument("--step-id", required=True, help="the task's step")
    p.add_argument("--task-id", default=None, help="the task (none: a step-level output, as chunked steps write)")
    p.add_argument("--session-action-id", required=True, help="the task's session action (names the output)")
    p.add_argument("--start-time", required=True, type=float, metavar="T",
                   help="when the task's session action started (seconds since the epoch): names the output")
    p.set_defaults(handler=_finish)


def _start(args: argparse.Namespace) -> int:
    from fscas.attachments import Attachments
    from fscas.files import atomic_write_bytes

    attachments = Attachments.load(args.attachments)
    with open_store_of(args) as store:
        done = transfer(args, "downloading", lambda bar: store.session_start(
            attachments, args.session_dir, farm_id=args.farm_id, queue_id=args.queue_id, job_id=args.job_id,
            step_dependencies=args.step_dependency, locations=locations_from(args), group=args.group, vfs=args.vfs,
            callback=bar))
        url = store.url
    rules = done.rules_document()
    if args.write_path_mapping_rules:
        atomic_write_bytes(args.write_path_mapping_rules, json.dumps(rules, indent=2).encode(), durable=False)
    if args.json:
        emit_json({"store": url, "session_dir": args.session_dir, "roots": dict(done.roots),
                   "path_mapping_rules": rules, "shared": list(done.shared), "manifests": done.manifests,
                   **done.summary.as_dict()})
        return 0
    for source, local in done.roots.items():
        print(f"{source} -> {local}")
    print(f"{done.manifests} manifests: {done.summary.files} files, {done.summary.bytes} bytes downloaded; "
          f"{done.summary.unchanged_files} already in place; {done.summary.seconds:.2f} s", file=sys.stderr)
    return 0


def _finish(args: argparse.Namespace) -> int:
    from fscas.attachments import Attachments

    attachments = Attachments.load(args.attachments)
    with open_store_of(args) as store:
        done = transfer(args, "uploading", lambda bar: store.session_finish(
            attachments, args.session_dir, farm_id=args.farm_id, queue_id=args.queue_id, job_id=args.job_id,
            step_id=args.step_id, task_id=args.task_id, session_action_id=args.session_action_id,
            start_time=args.start_time, locations=locations_from(args), callback=bar))
        url = store.url
    if args.json:
        emit_json({"store": url, "keys": list(done.keys), "output_files": done.files, "output_bytes": done.bytes,
                   **done.summary.as_dict()})
        return 0
    for key in done.keys:
        print(key)
    print(f"{done.files} output files ({done.bytes} bytes) in {len(done.keys)} manifests; {done.summary.files} "
          f"objects sent, {done.summary.skipped_files} already in the store", file=sys.stderr)
    return 0
