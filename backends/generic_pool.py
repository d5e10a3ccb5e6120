"""The generic backend's threads and connections for calls into a filesystem's sync API.

A filesystem that is not thread-safe (ftplib: one control connection, one command at a time) gets
a pool of connections, each held by one caller at a time; any other is shared as it is.

A thread cannot be stopped. A caller cancelled while its call runs lets go at once, but the
connection goes back to the pool only when that thread is done with it. Handed back early, two
threads would share one FTP control connection, read each other's replies and leave it broken for
every later call: 221 of 400 GETs failed after 10 puts were cancelled mid-write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fscas.backends.generic_info import close_fs

__all__ = ["Lease", "Pool"]

THREADS = 16
"""Calls of a sync filesystem in flight (they wait on the network, not the CPU)."""


class Lease:
    """A connection held by one caller. Its calls run one at a time, on the pool's threads."""

    def __init__(self, conn: Any, threads: concurrent.futures.ThreadPoolExecutor) -> None:
        self.conn = conn
        self._threads = threads
        self.running: asyncio.Future[Any] | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` on a thread; a cancel reaches the caller at once and leaves the call running."""
        if self.running is not None and not self.running.done():
            await asyncio.wait([self.running])  # a call cancelled earlier is still on this connection
        self.running = asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)
        self.running.add_done_callback(_retrieved)
        return await asyncio.shield(self.running)


def _retrieved(call: asyncio.Future[Any]) -> None:
    """Mark a call's error as seen: one whose caller was cancelled has nobody left to raise it to."""
    if not call.cancelled():
        call.exception()


class Pool:
    """The connections of one filesystem: `first`, and for an `exclusive` one up to `size` made by `make`."""

    def __init__(self, first: Any, make: Callable[[], Any] | None, *, size: int, exclusive: bool) -> None:
        self._first, self._make, self._size, self._exclusive = first, make, size, exclusive
        self._threads = concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="fscas-fsspec")
        self._idle: asyncio.Queue[Any] | None = None
        self._closed = False
        self._closing: set[asyncio.Future[None]] = set()

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Lease]:
        if not self._exclusive:
            yield Lease(self._first, self._threads)
            return
        if self._idle is None:
            self._idle = asyncio.Queue()
            self._idle.put_nowait(self._first)
            if self._make is not None:  # a filesystem passed in stays one connection
                for _ in range(self._size - 1):
                    self._idle.put_nowait(await asyncio.to_thread(self._make))
        lease = Lease(await self._idle.get(), self._threads)
        try:
            yield lease
        finally:
            if lease.running is None or lease.running.done():
                self._give_back(lease.conn)
            else:  # cancelled while its thread works on: back once that thread is done
                lease.running.add_done_callback(lambda _: self._give_back(lease.conn))

    def _give_back(self, conn: Any) -> None:
        if not self._closed:
            assert self._idle is not None
            self._idle.put_nowait(conn)
        elif self._make is not None:  # the pool closed while a thread still had it
            closing = asyncio.ensure_future(close_fs(conn))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    def close(self) -> list[Any]:
        """Stop handing out connections; returns the idle ones, for the caller to close."""
        self._closed = True
        idle = [self._first] if self._idle is None else [self._idle.get_nowait() for _ in range(self._idle.qsize())]
        self._threads.shutdown(wait=False)
        return idle
