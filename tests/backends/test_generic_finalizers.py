"""A filesystem the generic backend made is closed on fsspec's loop, whichever thread lets go of it.

sshfs and s3fs close a collected instance from a finalizer that picks the *running* loop of the
thread the collector happens to run on. On a caller's loop that leaves a task awaiting fsspec's
loop, and `asyncio.run` can then wait for it forever at shutdown: a conformance check once hung
600 s in CI, and an sshfs with 8 SFTP channels collected inside `asyncio.run` hangs it within a
few hundred tries. The loop here is never shut down with a task of fsspec's on it, so that a
failure fails and does not hang.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from typing import Any

from fscas.backends import open_backend
from fscas.conformance.plugin import unique_bucket


def _drop_while_a_loop_runs(url: str, options: dict[str, Any]) -> Any:
    """Make a plain filesystem beside a backend, use it, then let it be collected on this thread while
    this thread's loop runs. Returns what the loop was left with and the filesystem's SSH client."""
    backend = open_backend(url, **options)
    gc.collect()  # filesystems other tests made (and left to their finalizers) go now, with no loop running

    async def main() -> tuple[set[asyncio.Task[Any]], Any]:
        fs, root = await asyncio.to_thread(backend.plain_filesystem)
        parent = root.rsplit("/", 1)[0]  # the bucket, or the server's folder for it
        await asyncio.gather(*(asyncio.to_thread(fs.ls, parent) for _ in range(8)))  # sshfs: several channels
        client, alive = getattr(fs, "_client", None), weakref.ref(fs)
        del fs
        for _ in range(500):  # a worker thread may hold it a moment longer (the call it just finished)
            gc.collect()  # its finalizer runs here, on this thread
            if alive() is None:
                break
            await asyncio.sleep(0.01)
        assert alive() is None, "the filesystem was never collected"
        return asyncio.all_tasks() - {asyncio.current_task()}, client

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:  # not asyncio.run: cancelling a close of fsspec's loop's objects here may never finish
        loop.close()


def test_sftp_filesystem_dropped_on_a_callers_loop_closes_on_fsspecs_loop(sftp_server: Any) -> None:
    bucket = unique_bucket()
    sftp_server.create_bucket(bucket)
    left, client = _drop_while_a_loop_runs(sftp_server.store_url(bucket, "p"), sftp_server.options())
    assert not left, f"the filesystem's finalizer scheduled work on the caller's loop: {left}"
    deadline = time.monotonic() + 10
    while not client.is_closed() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.is_closed(), "the SSH connection of the collected filesystem was never closed"


def test_s3fs_filesystem_dropped_on_a_callers_loop_leaves_it_no_task(seaweedfs: Any) -> None:
    bucket = unique_bucket()
    seaweedfs.create_bucket(bucket)
    left, _ = _drop_while_a_loop_runs(seaweedfs.store_url(bucket, "p"),
                                      {"backend": "fsspec", **seaweedfs.options()})
    assert not left, f"the filesystem's finalizer scheduled work on the caller's loop: {left}"
