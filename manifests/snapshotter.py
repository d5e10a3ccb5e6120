"""Snapshot a folder into a manifest: walk, reuse cached hashes, hash the rest in parallel."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, Protocol

from fscas.manifests.hashcache import HashCache, default_cache_dir, stat_key
from fscas.manifests.hashing import SMALL, FileDigest, hash_path
from fscas.manifests.model import Manifest, ManifestPath
from fscas.manifests.walk import Entry, GlobFilter, SkipHandler, entries_of, walk

__all__ = ["Progress", "snapshot", "snapshot_files"]

#: Small files are hashed in batches so that executor overhead does not dominate.
_BATCH_FILES = 256


class Progress(Protocol):
    """What snapshot reports progress to; `fsspec.callbacks.Callback` fits."""

    def set_size(self, size: int) -> None: ...
    def relative_update(self, inc: int = 1) -> None: ...


HashCacheArg = HashCache | str | os.PathLike[str] | Literal[False] | None


def _open_cache(hash_cache: HashCacheArg) -> tuple[HashCache | None, bool]:
    """Return the cache to use and whether this call owns (and must close) it."""
    if hash_cache is False:
        return None, False
    if isinstance(hash_cache, HashCache):
        return hash_cache, False
    path = hash_cache if hash_cache is not None else os.path.join(default_cache_dir(), "hashes.db")
    return HashCache(path), True


def _batches(entries: list[Entry]) -> tuple[list[list[Entry]], list[list[Entry]]]:
    """Split into large files (one task each, largest first) and batches of small files."""
    ordered = sorted(entries, key=lambda e: e.stat.st_size, reverse=True)
    large = [[e] for e in ordered if e.stat.st_size > SMALL]
    small = [e for e in ordered if e.stat.st_size <= SMALL]
    return large, [small[i : i + _BATCH_FILES] for i in range(0, len(small), _BATCH_FILES)]


_Hashed = tuple[Entry, FileDigest | None, int]


def _hash_batch(batch: list[Entry], progress: Progress | None) -> list[_Hashed]:
    out: list[_Hashed] = []
    for e in batch:
        read_at = time.time_ns()
        try:
            # O_NOFOLLOW: a file swapped for a link after the walk must not pull in bytes from
            # outside the root (link entries already carry their resolved, in-root target).
            out.append((e, hash_path(e.path, follow_symlinks=False), read_at))
        except FileNotFoundError:
            out.append((e, None, read_at))
        if progress is not None:
            progress.relative_update(e.stat.st_size)
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
) -> Manifest:
    """Snapshot the files under `root` into a manifest (paths in no particular order).

    Files are walked under the policy of `fscas.manifests.walk` (dotfiles included, links never
    followed out of the root). Unchanged files take their hash from the SQLite hash cache; the rest
    are hashed by `workers` threads (xxhash and reads release the GIL).

    Args:
        root: the folder to snapshot.
        include: globs a file must match (all files if empty).
        exclude: globs that leave a file out; `dir/**` prunes a whole folder.
        hash_cache: None for the default cache under `$XDG_CACHE_HOME/fscas`, a path or a
            `HashCache` to use another, False for none.
        workers: hashing threads; default twice the CPU count.
        on_skip: called with (path, reason) for each file left out (links out, vanished files).
        progress: told the total bytes to hash, then each file's bytes as it is hashed.

    Raises:
        SnapshotError: `root` is not a folder, or a file or folder cannot be read.
        ConfigError: a glob is malformed.
    """
    root_abs = os.path.abspath(os.fspath(root))
    filt = GlobFilter.from_globs(include, exclude)
    skip: SkipHandler = on_skip or (lambda rel, why: None)
    # Measured: loading the cache on a second thread while walking is slower (GIL contention).
    return _hash_entries(root_abs, lambda: list(walk(root_abs, filt, skip)), hash_cache, workers, skip, progress)


def snapshot_files(root: str | os.PathLike[str], rels: Sequence[str], *, hash_cache: HashCacheArg = None,
                   workers: int | None = None, on_skip: SkipHandler | None = None,
                   progress: Progress | None = None) -> Manifest:
    """Snapshot only the files `rels` under `root`, under `snapshot`'s policy: one shard of a tree
    (`fscas.distributed`). Files that vanished or are not files any more are skipped and reported.
    """
    root_abs = os.path.abspath(os.fspath(root))
    skip: SkipHandler = on_skip or (lambda rel, why: None)
    return _hash_entries(root_abs, lambda: list(entries_of(root_abs, rels, skip)), hash_cache, workers, skip,
                         progress)


def _hash_entries(root_abs: str, entries: Callable[[], list[Entry]], hash_cache: HashCacheArg, workers: int | None,
                  skip: SkipHandler, progress: Progress | None) -> Manifest:
    cache, owned = _open_cache(hash_cache)
    try:
        done, todo = _split_cached(entries(), cache, root_abs)
        done.extend(_hash_all(todo, cache, workers, skip, progress))
    finally:
        if owned and cache is not None:
            cache.close()
    return Manifest.from_paths(done)


def _split_cached(
    entries: list[Entry], cache: HashCache | None, root_abs: str
) -> tuple[list[ManifestPath], list[Entry]]:
    if cache is None:
        return [], entries
    known = cache.load_under(root_abs)
    root_real = os.path.realpath(root_abs)
    if root_real != root_abs:
        known.update(cache.load_under(root_real))
    done: list[ManifestPath] = []
    todo: list[Entry] = []
    for e in entries:
        hit = known.get(e.path)
        if hit is None and e.path != os.path.join(root_abs, e.rel):  # a link's target elsewhere
            cached = cache.get(e.path, e.stat)
            hit = (stat_key(e.stat), cached) if cached is not None else None
        if hit is not None and hit[0] == stat_key(e.stat):
            done.append(ManifestPath(e.rel, hit[1], e.stat.st_size, e.stat.st_mtime_ns // 1000))
        else:
            todo.append(e)
    return done, todo


def _hash_all(
    todo: list[Entry],
    cache: HashCache | None,
    workers: int | None,
    skip: SkipHandler,
    progress: Progress | None,
) -> list[ManifestPath]:
    if progress is not None:
        progress.set_size(sum(e.stat.st_size for e in todo))
    out: list[ManifestPath] = []
    fresh: list[tuple[str, FileDigest]] = []
    n = workers or min(32, 2 * (os.cpu_count() or 1))
    large, small = _batches(todo)
    # Large files on `n` threads (reads and xxhash release the GIL); small files on one more
    # thread of their own: their per-file Python work holds the GIL, and several threads
    # contending for it on tiny syscalls run slower than one (the convoy effect).
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="fscas-hash") as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="fscas-hash-small") as serial:
        futures = [pool.submit(_hash_batch, b, progress) for b in large]
        futures += [serial.submit(_hash_batch, b, progress) for b in small]
        try:
            for fut in futures:
                for e, d, read_at in fut.result():
                    if d is None:
                        skip(e.rel, "vanished during the snapshot")
                        continue
                    out.append(ManifestPath(e.rel, d.hash, d.size, d.mtime_ns // 1000))
                    if cache is not None and cache.cacheable(d, read_at):
                        fresh.append((e.path, d))
        except BaseException:
            for fut in futures:  # stop queued work on the first error
                fut.cancel()
            raise
    if cache is not None:
        cache.put_many(fresh)
    return out
