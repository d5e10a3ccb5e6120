"""Run the async core from blocking code, on fscas's own IO-thread loop, with clean cancellation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from fscas.errors import FscasError

__all__ = ["io_loop", "run_sync"]

T = TypeVar("T")
_LOOP: list[asyncio.AbstractEventLoop] = []
_LOCK = threading.Lock()


def _forget_loop_after_fork() -> None:
    # A forked child has the parent's loop object but not its thread: waiting on it would hang forever.
    global _LOCK
    _LOCK = threading.Lock()
    _LOOP.clear()


os.register_at_fork(after_in_child=_forget_loop_after_fork)


def io_loop() -> asyncio.AbstractEventLoop:
    """The process's IO loop, started on a daemon thread on first use (as fsspec and zarr do): the
    loop `run_sync` runs coroutines on, and work submitted without waiting (prefetches) goes to."""
    with _LOCK:
        if not _LOOP:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="fscas-io", daemon=True).start()
            _LOOP.append(loop)
        return _LOOP[0]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on fscas's IO-thread loop and wait for it.

    One loop for every blocking call, so a store's SDK sessions (created on first use) stay on the
    loop that made them. It is fscas's own rather than fsspec's, so that a call which never reaches
    a cloud SDK (a re-upload answered by the existence cache) does not pay fsspec's imports.
    A KeyboardInterrupt cancels the coroutine and waits until it has cleaned up (temp files
    removed, multipart uploads aborted) before it propagates.

    Raises:
        FscasError: called from inside a running event loop (use `AsyncStore` there).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise FscasError("blocking fscas call inside a running event loop: use AsyncStore (await store.aio...)")
    future = asyncio.run_coroutine_threadsafe(coro, io_loop())
    try:
        return future.result()
    except BaseException:
        future.cancel()
        with contextlib.suppress(BaseException):
            concurrent.futures.wait([future], timeout=30)
        raise
