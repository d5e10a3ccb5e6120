"""Snapshot a folder into a manifest: walk, reuse cached hashes, hash the rest in parallel."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Literal, Protocol

from fscas.manifests import snapstate
from fscas.manifests.cachedir import default_cache_dir
from fscas.manifests.codec import encode
from fscas.manifests.hashcache import HashCache, stat_key
from fscas.manifests.hashing import SMALL, FileDigest, hash_path_reading
from fscas.manifests.model import Manifest, ManifestPath
from fscas.manifests.readers import MANY, Gate
from fscas.manifests.walker import Entry, GlobFilter, SkipHandler, entries_of, walk

__all__ = ["OnHashed", "Progress", "snapshot", "snapshot_files"]

#: Small files are hashed in batches so that executor overhead does not dominate.
_BATCH_FILES = 256


class Progress(Protocol):
    """What snapshot reports progress to; `fsspec.callbacks.Callback` fits."""

    def set_size(self, size: int) -> None: ...
    def relative_update(self, inc: int = 1) -> None: ...


HashCacheArg = HashCache | str | os.PathLike[str] | Literal[False] | None
OnHashed = Callable[[list[tuple[str, str, bytes]]], None]
"""Told, on a hashing thread, each batch of small files just hashed from their bytes: (manifest path,
hash, the bytes hashed). Several threads may tell at once (files read from the disk are read in
parallel), so it must be thread-safe. It may block: hashing waits (a consumer's backpressure)."""


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block, then restore it as it was (Mercurial's
    `util.nogc` does the same around its large structures).

    A snapshot holds lists of one entry per file. Each full collection visits every element of every
    list held, and with so few objects tracked (`_Walked`) full collections come every few seconds:
    a 1,000,000-file cold snapshot took 73 s collecting, 66-70 s paused. Snapshotting makes no
    reference cycles of its own; any the process's other threads make meanwhile are collected once
    the block ends.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _open_cache(hash_cache: HashCacheArg) -> tuple[HashCache | None, bool]:
    """Return the cache to use and whether this call owns (and must close) it."""
    if hash_cache is False:
        return None, False
    if isinstance(hash_cache, HashCache):
        return hash_cache, False
    path = hash_cache if hash_cache is not None else os.path.join(default_cache_dir(), "hashes.db")
    return HashCache(path), True


_Key = tuple[int, int, int, int, int]
_Walked = tuple[str, str, _Key]
"""(manifest path, path to open, stat key) of a file walked. A plain tuple of str and int, which the
garbage collector stops visiting after one look; an `Entry` (a NamedTuple) it visits at every full
collection: with 1,000,000 of them held, collections took ~11 s of a 77 s cold snapshot."""


def _batches(entries: list[_Walked]) -> tuple[list[list[_Walked]], list[list[_Walked]]]:
    """Split into large files (one task each, largest first) and batches of small files in the walk's
    order: a folder's files are read together, near each other on disk (1,000,000 tiny files from
    disk: 53 µs per file in walk order, 58 in size order)."""
    large = sorted((e for e in entries if e[2][0] > SMALL), key=lambda e: e[2][0], reverse=True)
    small = [e for e in entries if e[2][0] <= SMALL]
    return [[e] for e in large], [small[i : i + _BATCH_FILES] for i in range(0, len(small), _BATCH_FILES)]


_Hashed = tuple[_Walked, FileDigest | None, int]


def _hash_batch(batch: list[_Walked], progress: Progress | None, on_hashed: OnHashed | None,
                gate: Gate | None = None) -> list[_Hashed]:
    out: list[_Hashed] = []
    kept: list[tuple[str, str, bytes]] = []
    cold = 0
    for e in batch:
        rel, path, key = e
        read_at = time.time_ns()
        try:
            # O_NOFOLLOW: a file swapped for a link after the walk must not pull in bytes from
            # outside the root (link entries already carry their resolved, in-root target).
            d, data, from_disk = hash_path_reading(path, follow_symlinks=False)
            cold += from_disk
            out.append((e, d, read_at))
            if on_hashed is not None and data is not None:
                kept.append((rel, d.hash, data))
        except FileNotFoundError:
            out.append((e, None, read_at))
        if progress is not None:
            progress.relative_update(key[0])
    if gate is not None:
        gate.note(cold, len(batch))
    if kept and on_hashed is not None:
        on_hashed(kept)
    return out


def snapshot(
    root: str | os.PathLike[str],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    hash_cache: HashCacheArg = None,
    workers: int | None = None,
    on_skip: SkipHandler | None = None,
    progress: Progress | None = None,
    on_hashed: OnHashed | None = None,
) -> Manifest:
    """Snapshot the files under `root` into a manifest (paths in no particular order).

    Files are walked under the policy of `fscas.manifests.walker` (dotfiles included, links never
    followed out of the root). Unchanged files take their hash from the SQLite hash cache; the rest
    are hashed by `workers` threads (xxhash and reads release the GIL). With a hash cache, the
    record of the last snapshot of `root` with the same globs (`fscas.manifests.snapstate`) is
    used when no folder or file under it changed: then nothing is walked, only stat-ed. Unless
    `on_hashed` is given, Python's cyclic garbage collector is paused for the call
    (`collector_paused`).

    Args:
        root: the folder to snapshot.
        include: globs a file must match (all files if empty).
        exclude: globs that leave a file out; `dir/**` prunes a whole folder.
        hash_cache: None for the default cache under `$XDG_CACHE_HOME/fscas`, a path or a
            `HashCache` to use another, False for none.
        workers: hashing threads; default twice the CPU count.
        on_skip: called with (path, reason) for each file left out (links out, vanished files).
        progress: told the total bytes to hash, then each file's bytes as it is hashed.
        on_hashed: told each batch of small files read and hashed by this call, with their bytes
            (files whose hash came from the cache are not read, so not told): a push sends them
            from there instead of reading them again (`fscas.pipeline`).

    Raises:
        SnapshotError: `root` is not a folder, or a file or folder cannot be read.
        ConfigError: a glob is malformed.
    """
    root_abs = os.path.abspath(os.fspath(root))
    filt = GlobFilter.from_globs(include, exclude)
    skip: SkipHandler = on_skip or (lambda rel, why: None)
    # Nothing of ours runs beside a snapshot alone; a push's event loop does (`on_hashed`), and what
    # it makes must be collected as it goes.
    with contextlib.nullcontext() if on_hashed is not None else collector_paused():
        cache, owned = _open_cache(hash_cache)
        try:
            record = None if cache is None else snapstate.state_path(os.path.dirname(cache.path), root_abs, include,
                                                                     exclude)
            if record is not None and (found := snapstate.load(record, root_abs, include, exclude)) is not None:
                for rel, why in found.skipped:
                    skip(rel, why)
                if progress is not None:
                    progress.set_size(0)
                return Manifest(paths=tuple(ManifestPath(*e) for e in found.entries()), total_size=found.total_size)
            started = time.time_ns()
            folders: list[tuple[str, str, os.stat_result]] = []
            skipped: list[tuple[str, str]] = []

            def noted(rel: str, why: str) -> None:
                skipped.append((rel, why))
                skip(rel, why)

            # Measured: loading the cache on a second thread while walking is slower (GIL contention).
            # The walk's entries go when hashing ends (no name keeps them): the manifest, its encoding
            # and the record below are built without them.
            files, fresh = _hash_entries(root_abs, walk(root_abs, filt, noted, folders=folders), cache,
                                         workers, noted, progress, on_hashed)
            if cache is not None:
                cache.put_many(fresh)
            del fresh
        finally:
            if owned and cache is not None:
                cache.close()
        m = Manifest.from_paths(ManifestPath(rel, digest, key[0], key[1] // 1000) for rel, _, key, digest in files)
        if record is not None and cache is not None and m.paths:
            saved = snapstate.Saved(folders, files, skipped, encode(m), m.total_size)
            snapstate.save(record, root_abs, include, exclude, saved, started_ns=started,
                           racy_window_ns=cache.racy_window_ns)
        return m


def snapshot_files(root: str | os.PathLike[str], rels: Sequence[str], *, hash_cache: HashCacheArg = None,
                   workers: int | None = None, on_skip: SkipHandler | None = None,
                   progress: Progress | None = None) -> Manifest:
    """Snapshot only the files `rels` under `root`, under `snapshot`'s policy: one shard of a tree
    (`fscas.distributed`). Files that vanished or are not files any more are skipped and reported.
    """
    root_abs = os.path.abspath(os.fspath(root))
    skip: SkipHandler = on_skip or (lambda rel, why: None)
    cache, owned = _open_cache(hash_cache)
    with collector_paused():
        try:
            files, fresh = _hash_entries(root_abs, entries_of(root_abs, rels, skip), cache, workers,
                                         skip, progress)
            if cache is not None:
                cache.put_many(fresh)
        finally:
            if owned and cache is not None:
                cache.close()
        return Manifest.from_paths(ManifestPath(rel, digest, key[0], key[1] // 1000)
                                   for rel, _, key, digest in files)


_Found = tuple[str, str, _Key, str]
"""(manifest path, path opened, stat key the hash belongs to, hash) of one file."""
_Fresh = list[tuple[str, _Key, str]]
"""(path opened, stat key, hash) of each file hashed that the hash cache may keep."""


def _hash_entries(root_abs: str, entries: Iterable[Entry], cache: HashCache | None, workers: int | None,
                  skip: SkipHandler, progress: Progress | None, on_hashed: OnHashed | None = None
                  ) -> tuple[list[_Found], _Fresh]:
    """Every file's hash, from the cache or read; and what the cache should record (the caller
    records it once the walk's entries are gone: they are ~0.5 KiB per file, measured at 100,000).

    The walk ends before hashing starts. Measured, hashing batches as the walk found them was slower
    (1,000,000 tiny files from disk: 72 s against 66 s): the walking thread contends with the reading
    ones for the GIL and the two cores.
    """
    done, todo = _split_cached(entries, cache, root_abs)
    if progress is not None:
        progress.set_size(sum(e[2][0] for e in todo))
    hashed, fresh = _hash_all(todo, cache, workers, skip, progress, on_hashed)
    done.extend(hashed)
    return done, fresh


def _split_cached(entries: Iterable[Entry], cache: HashCache | None, root_abs: str
                  ) -> tuple[list[_Found], list[_Walked]]:
    """The files whose hash the cache holds, and the rest as plain tuples (each `Entry` converted,
    and freed, as the walk yields it)."""
    if cache is None:
        return [], [(e.rel, e.path, stat_key(e.stat)) for e in entries]
    known = cache.load_under(root_abs)
    root_real = os.path.realpath(root_abs)
    if root_real != root_abs:
        known.update(cache.load_under(root_real))
    done: list[_Found] = []
    todo: list[_Walked] = []
    for e in entries:
        rel, path, key = e.rel, e.path, stat_key(e.stat)
        hit = known.get(path)
        if hit is None and path != os.path.join(root_abs, rel):  # a link's target elsewhere
            cached = cache.get(path, e.stat)
            hit = (key, cached) if cached is not None else None
        if hit is not None and hit[0] == key:
            done.append((rel, path, key, hit[1]))
        else:
            todo.append((rel, path, key))
    return done, todo


def _hash_all(
    todo: list[_Walked],
    cache: HashCache | None,
    workers: int | None,
    skip: SkipHandler,
    progress: Progress | None,
    on_hashed: OnHashed | None,
) -> tuple[list[_Found], _Fresh]:
    out: list[_Found] = []
    fresh: _Fresh = []
    n = workers or min(32, 2 * (os.cpu_count() or 1))
    large, small = _batches(todo)
    # Large files on `n` threads (reads and xxhash release the GIL); small files on threads of
    # their own, one at a time while their per-file Python work is what takes the time (several
    # contending for the GIL on tiny syscalls run slower than one: the convoy effect), several
    # while they wait on the disk (`fscas.manifests.readers`).
    gate = Gate()
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="fscas-hash") as pool, \
            ThreadPoolExecutor(max_workers=MANY, thread_name_prefix="fscas-hash-small") as readers:
        futures = deque(pool.submit(_hash_batch, b, progress, None) for b in large)
        futures += (readers.submit(gate.run, partial(_hash_batch, b, progress, on_hashed, gate)) for b in small)
        del large, small
        try:
            while futures:  # popped, so that each batch's results are freed once taken
                for (rel, path, walked), d, read_at in futures.popleft().result():
                    if d is None:
                        skip(rel, "vanished during the snapshot")
                        continue
                    key = (d.size, d.mtime_ns, d.ctime_ns, d.inode, d.dev)
                    if key == walked:  # as walked (nearly always): keep the walk's ints, not fstat's
                        key = walked
                    out.append((rel, path, key, d.hash))
                    if cache is not None and cache.cacheable(d, read_at):
                        fresh.append((path, key, d.hash))
        except BaseException:
            for fut in futures:  # stop queued work on the first error
                fut.cancel()
            raise
    return out, fresh
