"""Sequential read-ahead for `fscas mount`: the small files after the one being read, fetched ahead and
held in memory, so `cp -r` of a mounted snapshot waits on the network about as little as a pull does."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import threading
from typing import TYPE_CHECKING

from fscas.packs import PACKED_MAX

if TYPE_CHECKING:
    from fscas.fs import FscasFileSystem

__all__ = ["ReadAhead"]

_AHEAD_PER_SLOT = 8  # files read ahead of the one opened (in the snapshot's order), per fetch in flight
_AHEAD_SIZE = 4 * 2**20  # only files up to this size: a large one is fetched when it is opened
_HOLD = 64 * 2**20  # bytes of read-ahead kept in memory for the reads to come (the cache has them too)


class ReadAhead:
    """Sequential read-ahead over the snapshot: opening a file keeps the next small files in the
    manifest's order (the order `cp -r`, `tar` and `rsync` read a tree in) being fetched, as many at
    once on fscas's IO loop as the store's `concurrency` (32 by default: what a pull keeps in flight),
    8 times that many ahead, and their bytes held for the reads to come. An open waits for its
    file's fetch if it has started, and otherwise fetches the file itself. Listing fetches nothing."""

    def __init__(self, fs: FscasFileSystem) -> None:
        from fscas.runner import io_loop

        self.fs, self.loop = fs, io_loop()
        self.order = fs.manifest.paths
        self.index = {p.path: i for i, p in enumerate(self.order)}
        self.reached = 0  # everything before this index was offered once
        self.pending: dict[str, concurrent.futures.Future[object]] = {}
        self.started: set[str] = set()
        self.held: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self.held_bytes = 0
        self.mutex = threading.Lock()
        self.slots: asyncio.Semaphore | None = None
        self.at_once = fs.store.aio.concurrency
        self.ahead = _AHEAD_PER_SLOT * self.at_once
        self.tasks: set[asyncio.Task[None]] = set()

    def reading(self, rel: str, digest: str) -> None:
        """`rel` (of `digest`) is being read from its start: wait for its fetch if one is under way,
        and keep the files after it coming."""
        self._wait(digest)
        self._move_on(rel)

    def _move_on(self, rel: str) -> None:
        i = self.index.get(rel)
        if i is None:
            return
        with self.mutex:
            if self.reached - i > self.ahead // 2:
                return  # still far enough ahead: moved on in halves, one wake-up of the IO loop each
            start, end = max(i + 1, self.reached), min(len(self.order), i + 1 + self.ahead)
            batch = []
            for p in self.order[start:end]:
                if p.size <= _AHEAD_SIZE and p.hash not in self.pending:
                    done: concurrent.futures.Future[object] = concurrent.futures.Future()
                    self.pending[p.hash] = done
                    batch.append((p.hash, p.size, done))
            self.reached = max(self.reached, end)
        if batch:
            self.loop.call_soon_threadsafe(self._start, batch)

    def _start(self, batch: list[tuple[str, int, concurrent.futures.Future[object]]]) -> None:
        for digest, size, done in batch:
            task = asyncio.ensure_future(self._one(digest, size, done))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _one(self, digest: str, size: int, done: concurrent.futures.Future[object]) -> None:
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.at_once)
        async with self.slots:
            with self.mutex:
                self.started.add(digest)
            cache, backend = self.fs.cache, self.fs.store.aio.backend
            try:
                if size <= PACKED_MAX:  # packed: one append, not one new file, per small object
                    self._hold(digest, await cache.fetch_bytes(backend, digest, size))
                    done.set_result(None)
                else:
                    done.set_result(await cache.fetch(backend, digest, size,
                                                      keep=lambda data: self._hold(digest, data)))
            except BaseException as e:  # a reader waiting on it fetches again itself and reports the error
                done.set_exception(e)
                if not isinstance(e, Exception):
                    raise

    def _hold(self, digest: str, data: bytes) -> None:
        with self.mutex:
            if digest in self.held:
                return
            self.held[digest] = data
            self.held_bytes += len(data)
            while self.held_bytes > _HOLD:  # never read (the reader went elsewhere): the oldest go
                self.held_bytes -= len(self.held.popitem(last=False)[1])

    def take(self, digest: str, offset: int, size: int) -> bytes | None:
        """`size` bytes at `offset` of a file read ahead, or None when none are held; the bytes are
        let go once read to the end."""
        with self.mutex:
            data = self.held.get(digest)
            if data is None:
                return None
            if offset + size >= len(data):
                del self.held[digest]
                self.held_bytes -= len(data)
        return data[offset:offset + size]

    def _wait(self, digest: str) -> None:
        with self.mutex:
            pending = self.pending.pop(digest, None)
            running = digest in self.started
            self.started.discard(digest)
        if pending is not None and running:
            with contextlib.suppress(Exception):  # the open fetches it again itself, and reports the error
                pending.result()
