"""A whole queue's job outputs, incrementally, as `deadline queue sync-output` fetches them.

One checkpoint file per queue records each output manifest handled (key and LastModified). A run
lists the queue's output manifests (a listing, nothing read), reads only those the checkpoint does
not record, selects per job as `outputs download` does (the latest run of each task), downloads
them job by job and rewrites the checkpoint after each job (atomically: a run killed at any point
is rerun and resumes). The first run (no checkpoint yet) only takes what finished in the last
`bootstrap_lookback_minutes` and records the rest as handled, as Deadline's bootstrap does.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from fscas.errors import ConfigError
from fscas.listing import list_manifests
from fscas.manifests import select_outputs
from fscas.outputs import DestForRoot, plan_outputs, read_output
from fscas.state import SeenState

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from fscas.pathmapping import PathMappingRules
    from fscas.store import AsyncStore

__all__ = ["JobSynced", "QueueSyncSummary", "checkpoint_path", "sync_outputs"]

_VERSION = "fscas-queue-sync-1"


@attrs.frozen(kw_only=True)
class JobSynced:
    """One job's part of a sync: its new output manifests, and what they brought."""

    job_id: str
    manifests: int
    """New output manifests of the job (all recorded; the selected ones downloaded)."""
    files: int
    bytes: int
    skipped_files: int = 0
    destinations: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain fields for `--json`'s line per job."""
        return {"job_id": self.job_id, "manifests": self.manifests, "files": self.files, "bytes": self.bytes,
                "skipped_files": self.skipped_files, "destinations": list(self.destinations)}


@attrs.frozen(kw_only=True)
class QueueSyncSummary:
    """What `sync_outputs` did (or, with `dry_run`, would do)."""

    checkpoint: str
    jobs: tuple[JobSynced, ...]
    unchanged: int
    """Output manifests of the queue the checkpoint already recorded."""
    bootstrapped: int = 0
    """On the first run: manifests older than the lookback, recorded without being downloaded."""
    dry_run: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain fields for `--json`'s summary line."""
        return {"checkpoint": self.checkpoint, "jobs": [j.as_dict() for j in self.jobs], "unchanged": self.unchanged,
                "bootstrapped": self.bootstrapped, "manifests": sum(j.manifests for j in self.jobs),
                "files": sum(j.files for j in self.jobs), "bytes": sum(j.bytes for j in self.jobs),
                "dry_run": self.dry_run, "seconds": round(self.seconds, 3)}


def checkpoint_path(checkpoint_dir: str | os.PathLike[str], farm_id: str, queue_id: str) -> str:
    """The queue's checkpoint file in `checkpoint_dir`."""
    return os.path.join(os.fspath(checkpoint_dir), f"{farm_id}.{queue_id}.sync.json")


async def sync_outputs(store: AsyncStore, farm_id: str, queue_id: str, *, checkpoint_dir: str | os.PathLike[str],
                       bootstrap_lookback_minutes: float = 0.0, dry_run: bool = False,
                       dest_for_root: DestForRoot | None = None, path_mapping: PathMappingRules | None = None,
                       file_system_locations: Mapping[str, str] | None = None, original_roots: bool = False,
                       conflict: Literal["skip", "overwrite", "create-copy"] = "overwrite",
                       callback: Callback | None = None, on_job: Callable[[JobSynced], None] | None = None,
                       now: float | None = None) -> QueueSyncSummary:
    """Download every job's new outputs in a queue; see the module's text.

    Args:
        bootstrap_lookback_minutes: on the first run, how far back to take outputs (0: none; the
            checkpoint then starts from now).
        dry_run: decide what would be downloaded and write nothing, not even the checkpoint.
        dest_for_root, path_mapping, file_system_locations, original_roots: where each asset root
            goes, as `fscas.outputs.download_outputs` takes them (a root nothing maps is refused).
        conflict: a local file that differs: replaced (`overwrite`, the default: a rerun's newer
            output replaces the earlier one), kept (`skip`) or downloaded beside it (`create-copy`).
        on_job: called with each job's part as soon as it is downloaded (the CLI prints a JSON line).
        now: the current time for the bootstrap cutoff (seconds since 1970; tests pass one).

    Raises:
        ConfigError: a negative lookback, a bad checkpoint (or another store's or queue's), a root
            nothing maps.
    """
    if not bootstrap_lookback_minutes >= 0:
        raise ConfigError(f"bootstrap lookback of {bootstrap_lookback_minutes} minutes: give 0 or more")
    started = time.monotonic()
    path = checkpoint_path(checkpoint_dir, farm_id, queue_id)
    first = not os.path.exists(path)
    state = SeenState.load(path, _VERSION, {"store": store.url, "farm_id": farm_id, "queue_id": queue_id},
                           "queue sync")
    listed = [m async for m in list_manifests(store.backend, kind="output", farm_id=farm_id, queue_id=queue_id)]
    cutoff = (time.time() if now is None else now) - 60 * bootstrap_lookback_minutes
    old = [m for m in listed if first and (m.last_modified or 0) < cutoff]
    old_keys = {m.key for m in old}
    new = [m for m in listed if not state.has(m.key, m.last_modified) and m.key not in old_keys]
    by_job: dict[str, list[str]] = {}
    for m in new:
        by_job.setdefault(m.key.split("/")[3], []).append(m.key)
    stamps = {m.key: m.last_modified for m in listed}
    done: list[JobSynced] = []
    if first and not dry_run:  # the checkpoint exists from the first run on, even when nothing is new
        state.record((m.key, m.last_modified) for m in old)
        os.makedirs(os.fspath(checkpoint_dir), exist_ok=True)
        state.save()
    for job_id in sorted(by_job):
        outputs = list(await asyncio.gather(*(read_output(store, key) for key in by_job[job_id])))
        placements = plan_outputs(select_outputs(outputs), dest_for_root=dest_for_root, path_mapping=path_mapping,
                                  file_system_locations=file_system_locations, original_roots=original_roots)
        if dry_run:
            job = JobSynced(job_id=job_id, manifests=len(outputs), files=sum(len(p.manifest.paths) for p in placements),
                            bytes=sum(p.manifest.total_size for p in placements),
                            destinations=tuple(p.dest for p in placements))
        else:
            summaries = [await store.download(p.manifest, p.dest, conflict=conflict, callback=callback)
                         for p in placements]
            job = JobSynced(job_id=job_id, manifests=len(outputs), files=sum(s.files for s in summaries),
                            bytes=sum(s.bytes for s in summaries),
                            skipped_files=sum(s.skipped_files for s in summaries),
                            destinations=tuple(p.dest for p in placements))
            state.record((key, stamps[key]) for key in by_job[job_id])
            state.save()  # job by job: a run killed later resumes after this job
        done.append(job)
        if on_job is not None:
            on_job(job)
    return QueueSyncSummary(checkpoint=path, jobs=tuple(done), unchanged=len(listed) - len(new) - len(old),
                            bootstrapped=len(old), dry_run=dry_run, seconds=time.monotonic() - started)
