"""Snapshot, push, pull and store-to-store copy spread over a Dask cluster or any
`concurrent.futures.Executor`, with the bytes one machine would produce: the same manifest, the
same keys, data before the manifest.

The driver walks the tree (lstat only) and splits it into shards balanced by bytes and file count:
a folder stays in one shard where it fits, a huge folder is split by name range, a huge file is a
shard of its own. Each task snapshots (and for `push` uploads) its shard on a worker, which opens
the store itself from its URL and options, and returns its part of the manifest. The driver merges
the parts in canonical order and writes the manifest only after every shard succeeded, through the
store's own commit: every object checked on the server, anything missing uploaded, the gc epoch
protocol kept. On a cluster the tree (for push) or the destination (for pull) must be on a
filesystem every worker sees. Credentials travel as store options in the task (never in its
repr or key) or, the way Dask users usually pass them, in the workers' environment.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from fscas import keys
from fscas.download import ConflictMode
from fscas.errors import ConfigError, SnapshotError
from fscas.manifests import GlobFilter, Manifest, ManifestPath, decode, encode, snapshot_files, walk
from fscas.paths import check_folder_target, check_layout, safe_join
from fscas.runner import run_sync
from fscas.summary import ShardRun, TransferSummary

if TYPE_CHECKING:
    from fscas.store import AsyncStore

__all__ = ["copy_objects_spread", "plan_shards", "process_pool", "pull", "push", "snapshot"]

T = TypeVar("T")
_RETRIES = 2  # a task that raised is tried again this often (Dask; a lost worker is rescheduled anyway)


def plan_shards(files: Sequence[tuple[str, int]], shards: int) -> list[list[str]]:
    """Split `(path, size)` pairs into about `shards` groups of similar bytes and file counts.

    Files of one folder stay together unless the folder alone is much larger than a shard (then it
    is split into contiguous name ranges); a file larger than a shard's share of bytes is a shard
    of its own. Every path lands in exactly one shard.
    """
    if not files:
        return []
    shards = max(1, shards)
    unit_bytes = max(1.0, sum(s for _, s in files) / shards)
    unit_files = max(1.0, len(files) / shards)

    def cost(size: int) -> float:  # a shard's share is 2: one for its bytes, one for its files
        return size / unit_bytes + 1 / unit_files

    out: list[list[str]] = [[p] for p, s in files if s >= unit_bytes]
    current: list[str] = []
    load = 0.0
    rest = sorted((p, s) for p, s in files if s < unit_bytes)
    for _, group in groupby(rest, key=lambda f: f[0].rpartition("/")[0]):
        items = list(group)
        folder = sum(cost(s) for _, s in items)
        if current and load + folder > 2.0:
            out.append(current)
            current, load = [], 0.0
        for path, size in items:  # a folder larger than a shard is cut by name range
            if current and load + cost(size) > 2.0 and folder > 2.0:
                out.append(current)
                current, load = [], 0.0
            current.append(path)
            load += cost(size)
    if current:
        out.append(current)
    return out


@attrs.frozen(kw_only=True)
class _Job:
    """One shard's work, as it travels to a worker. Its repr shows no store option (credentials)."""

    index: int
    root: str
    paths: tuple[str, ...] = attrs.field(repr=lambda p: f"<{len(p)} paths>")
    store: str = ""
    options: dict[str, Any] = attrs.field(factory=dict, repr=False)
    manifest: bytes = attrs.field(default=b"", repr=False)
    conflict: ConflictMode = "skip"
    checksum: bool = False
    target: str = ""
    """A copy's destination store (`store` is its source)."""
    target_options: dict[str, Any] = attrs.field(factory=dict, repr=False)
    objects: tuple[tuple[str, int], ...] = attrs.field(default=(), repr=lambda o: f"<{len(o)} objects>")


@attrs.frozen(kw_only=True)
class _Result:
    index: int
    worker: str
    paths: tuple[ManifestPath, ...]
    summary: TransferSummary
    skipped: tuple[tuple[str, str], ...]
    seconds: float
    done: tuple[str, ...] = ()


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):  # not on a Dask worker
        return f"{socket.gethostname()}:{os.getpid()}"


def _snapshot_shard(job: _Job) -> _Result:
    started, skipped = time.monotonic(), []
    m = snapshot_files(job.root, job.paths, on_skip=lambda rel, why: skipped.append((rel, why)))
    return _Result(index=job.index, worker=_worker_name(), paths=m.paths, skipped=tuple(skipped),
                   summary=TransferSummary(files=0, bytes=0), seconds=time.monotonic() - started)


def _push_shard(job: _Job) -> _Result:
    from fscas.blocking import open_store

    started, skipped = time.monotonic(), []
    m = snapshot_files(job.root, job.paths, on_skip=lambda rel, why: skipped.append((rel, why)))
    with open_store(job.store, **job.options) as store:
        summary = store.upload(m, job.root) if m.paths else TransferSummary(files=0, bytes=0)
    return _Result(index=job.index, worker=_worker_name(), paths=m.paths, skipped=tuple(skipped), summary=summary,
                   seconds=time.monotonic() - started)


def _pull_shard(job: _Job) -> _Result:
    from fscas.blocking import open_store

    started = time.monotonic()
    with open_store(job.store, **job.options) as store:
        summary = store.download(decode(job.manifest), job.root, conflict=job.conflict, checksum=job.checksum)
    return _Result(index=job.index, worker=_worker_name(), paths=(), skipped=(), summary=summary,
                   seconds=time.monotonic() - started)


def _copy_shard(job: _Job) -> _Result:
    from fscas.blocking import open_store
    from fscas.object_copy import copy_objects

    started = time.monotonic()
    with open_store(job.store, **job.options) as src, open_store(job.target, **job.target_options) as dst:
        done, bad = run_sync(copy_objects(src.aio.backend, dst.aio.backend, job.objects,
                                          concurrency=dst.aio.concurrency))
        dst.aio._remember(keys.data_key(d) for d in done)
    sizes = dict(job.objects)
    summary = TransferSummary(files=len(done), bytes=sum(sizes[d] for d in done))
    return _Result(index=job.index, worker=_worker_name(), paths=(), skipped=tuple(sorted(bad.items())),
                   summary=summary, seconds=time.monotonic() - started, done=tuple(done))


def copy_objects_spread(src: AsyncStore, dst: AsyncStore, objects: Sequence[tuple[str, int]], *, client: Any = None,
                        executor: Executor | None = None) -> tuple[list[str], dict[str, str], int]:
    """`fscas.copying.copy_objects` over many workers, each opening both stores again from their URLs.

    Returns:
        The digests copied, the bad source objects (key: why), and how many workers took part.

    Raises:
        ConfigError: a store not opened from a URL (`open_async_store`): a worker could not open it.
    """
    for store in (src, dst):
        if store.opened_with is None:
            raise ConfigError(f"{store.url}: spreading a copy needs stores opened from a URL, which every worker "
                              "opens again")
    if not objects:
        return [], {}, 0
    (src_url, src_options), (dst_url, dst_options) = src.opened_with, dst.opened_with  # type: ignore[misc]
    plan = plan_shards([(d, s) for d, s in objects], 4 * _parallelism(client, executor))
    sizes = dict(objects)
    jobs = [_Job(index=i, root="", paths=(), store=src_url, options=src_options, target=dst_url,
                 target_options=dst_options, objects=tuple((d, sizes[d]) for d in part))
            for i, part in enumerate(plan)]
    results = _run(_copy_shard, jobs, client, executor)
    return ([d for r in results for d in r.done], {k: why for r in results for k, why in r.skipped},
            len({r.worker for r in results}))


def _run(fn: Callable[[_Job], _Result], jobs: list[_Job], client: Any, executor: Executor | None) -> list[_Result]:
    """Every job's result, in job order; the first failure (after Dask's retries) is raised."""
    if client is not None:
        run = uuid.uuid4().hex[:12]
        futures = [client.submit(fn, job, key=f"fscas-{fn.__name__.strip('_')}-{run}-{job.index}", pure=False,
                                 retries=_RETRIES) for job in jobs]
        results: list[_Result] = client.gather(futures)
        return results
    owned = executor is None
    pool: Executor = executor or process_pool(os.cpu_count() or 1)
    try:
        futures2 = [pool.submit(fn, job) for job in jobs]
        try:
            return [f.result() for f in futures2]
        except BaseException:
            for f in futures2:
                f.cancel()
            raise
    finally:
        if owned:
            pool.shutdown(wait=True)


def process_pool(processes: int) -> ProcessPoolExecutor:
    """A pool of `processes` fresh interpreters (spawned: forking a process that runs threads is unsafe)."""
    return ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"))


def _parallelism(client: Any, executor: Executor | None) -> int:
    if client is not None:
        workers = client.scheduler_info()["workers"].values()
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers))
    return int(getattr(executor, "_max_workers", 0) or os.cpu_count() or 1)


def _plan(root: str, include: Sequence[str], exclude: Sequence[str], shards: int | None, client: Any,
          executor: Executor | None) -> tuple[str, list[list[str]]]:
    root_abs = os.path.abspath(root)
    files = [(e.rel, e.stat.st_size) for e in walk(root_abs, GlobFilter.from_globs(include, exclude))]
    if not files:
        raise SnapshotError(f"{root}: no files to snapshot")
    return root_abs, plan_shards(files, shards or 4 * _parallelism(client, executor))


def snapshot(root: str | os.PathLike[str], *, client: Any = None, executor: Executor | None = None,
             include: Sequence[str] = (), exclude: Sequence[str] = (), shards: int | None = None) -> Manifest:
    """Snapshot `root` on many workers; the manifest encodes to the bytes `fscas.snapshot(root)` gives.

    Args:
        client: a `distributed.Client`; or
        executor: any `concurrent.futures.Executor` (default: a process pool of this machine's CPUs).
            A process pool should spawn its workers (`process_pool`), not fork them: forking a
            process that runs threads (fscas's IO loop, a Dask client) can hang or crash the child.
        shards: how many tasks (default four per worker thread).
    """
    root_abs, plan = _plan(os.fspath(root), include, exclude, shards, client, executor)
    jobs = [_Job(index=i, root=root_abs, paths=tuple(p)) for i, p in enumerate(plan)]
    return Manifest.from_paths(p for r in _run(_snapshot_shard, jobs, client, executor) for p in r.paths)


def push(root: str | os.PathLike[str], store_url: str, *, farm_id: str, queue_id: str, client: Any = None,
         executor: Executor | None = None, include: Sequence[str] = (), exclude: Sequence[str] = (),
         shards: int | None = None, source_root: str | None = None,
         **store_options: Any) -> tuple[str, str, TransferSummary]:
    """Snapshot and upload `root` on many workers, then write its input manifest from here.

    The manifest is written only after every shard succeeded, through the store's commit (every
    object checked on the server, anything missing uploaded, safe beside a gc): the same key
    layout, manifest bytes and guarantees as `Store.push`.

    Returns:
        The input manifest's key, its hash, and a summary with `workers` and per-shard timings.

    Raises:
        The first shard's error once Dask's retries are spent (nothing is written then).
    """
    from fscas.blocking import open_store

    started = time.monotonic()
    root_abs, plan = _plan(os.fspath(root), include, exclude, shards, client, executor)
    jobs = [_Job(index=i, root=root_abs, paths=tuple(p), store=store_url, options=store_options)
            for i, p in enumerate(plan)]
    results = _run(_push_shard, jobs, client, executor)
    manifest = Manifest.from_paths(p for r in results for p in r.paths)
    if not manifest.paths:
        raise SnapshotError(f"{root}: no files to push (all vanished)")
    with open_store(store_url, **store_options) as store:
        key = keys.input_manifest_key(farm_id, queue_id, source_root or root_abs)
        digest, _ = store.commit(manifest, root_abs, key)
    return key, digest, _summary(results, started)


def pull(manifest_or_key: Manifest | str, dest: str | os.PathLike[str], store_url: str, *, client: Any = None,
         executor: Executor | None = None, conflict: ConflictMode = "skip", checksum: bool = False,
         shards: int | None = None,
         **store_options: Any) -> TransferSummary:
    """Materialise a manifest (or a manifest key in the store) into `dest` on many workers.

    Every path is checked here first (traversal, duplicates, file/folder clashes), then each worker
    writes its shard into `dest`, each file verified and renamed into place.
    """
    from fscas.blocking import open_store

    started = time.monotonic()
    if isinstance(manifest_or_key, Manifest):
        manifest = manifest_or_key
    else:
        with open_store(store_url, **store_options) as store:
            manifest = store.get_manifest(manifest_or_key)
    dest_path = os.path.abspath(dest)
    for p in manifest.paths:
        safe_join(Path(dest_path), p.path)
    check_layout(p.path for p in manifest.paths)
    check_folder_target(Path(dest_path))
    os.makedirs(dest_path, exist_ok=True)
    by_path = manifest.by_path()
    plan = plan_shards([(p.path, p.size) for p in manifest.paths], shards or 4 * _parallelism(client, executor))
    jobs = [_Job(index=i, root=dest_path, paths=(), store=store_url, options=store_options, conflict=conflict,
                 checksum=checksum,
                 manifest=encode(Manifest.from_paths(by_path[x] for x in part))) for i, part in enumerate(plan)]
    return _summary(_run(_pull_shard, jobs, client, executor), started)


def _summary(results: list[_Result], started: float) -> TransferSummary:
    runs = [ShardRun(index=r.index, worker=r.worker, files=r.summary.files, bytes=r.summary.bytes,
                     seconds=r.seconds) for r in results]
    return TransferSummary(files=sum(r.summary.files for r in results), bytes=sum(r.summary.bytes for r in results),
                           skipped_files=sum(r.summary.skipped_files for r in results),
                           skipped_bytes=sum(r.summary.skipped_bytes for r in results),
                           unchanged_files=sum(r.summary.unchanged_files for r in results),
                           kept=tuple(sorted(x for r in results for x in r.summary.kept)),
                           seconds=time.monotonic() - started, workers=len({r.worker for r in results}),
                           shards=tuple(runs))
