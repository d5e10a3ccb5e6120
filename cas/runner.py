"""Run the async core from blocking code, on fsspec's IO loop, with clean cancellation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from fscas.errors import FscasError

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on fsspec's IO-thread loop and wait for it.

    One loop for every blocking call, so a store's SDK sessions (created on first use) stay on the
    loop that made them. A KeyboardInterrupt cancels the coroutine and waits until it has cleaned
    up (temp files removed, multipart uploads aborted) before it propagates.

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
    from fsspec.asyn import get_loop

    future = asyncio.run_coroutine_threadsafe(coro, get_loop())
    try:
        return future.result()
    except BaseException:
        future.cancel()
        with contextlib.suppress(BaseException):
            concurrent.futures.wait([future], timeout=30)
        raise
