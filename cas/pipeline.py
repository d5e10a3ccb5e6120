"""Push a folder reading each small file once: hashed, and sent from the same bytes if the store lacks it.

A snapshot followed by an upload reads every file twice, and the second reading is only cheap while
the tree is still in the page cache: at 1,000,000 files of 0–1 KiB (4 GB of cache pages) it was not
(the VM's host had reclaimed it), and the upload's client CPU per file grew 1.4× from 100,000 files
(perf: virtio kicks, ext4 and dentry lookups). Here the snapshot's hashing thread hands each batch of
small files it hashed, bytes included, to the event loop, which uploads those the store lacks while
hashing goes on. The bytes sent are the bytes hashed, so what is stored under a digest is its
content whatever happens to the file meanwhile. Large files and files whose hash came from the hash
cache then go through the usual upload (`fscas.commit`), and the manifest last.

The epoch is read before the first upload (`fscas.commit.begin`), so a gc that runs meanwhile is
noticed and repaired as for any commit. Whether the store holds a digest is answered, in this order,
by the existence cache; by a HEAD; and, once the HEADs spent would have paid for a listing of
`Data/` (estimated from `Data/00`), by one listing (the ski-rental rule: never more than twice the
requests of the cheaper way). An unchanged tree sends nothing and asks nothing; a changed file costs
a HEAD and a PUT; a first push to an empty store, two listing requests.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fscas import keys
from fscas.commit import begin, commit
from fscas.errors import ObjectNotFound
from fscas.listing import estimated_data_pages
from fscas.manifests import Manifest
from fscas.summary import TransferSummary

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from fscas.manifests.snapshotter import OnHashed
    from fscas.store import AsyncStore

__all__ = ["push_tree"]

BUDGET = 32 * 2**20
"""Bytes of hashed small files waiting to be sent at once; hashing waits beyond it."""
AHEAD = 1024
"""Files waiting to be sent at once (at least 8 per sender); hashing waits beyond it. A hashing thread
far ahead of the senders buys nothing but memory: at 10,000 tiny files a bytes-only bound held the
whole tree (2.1 KiB per file pushed, 1.6 at 1,000,000), while the senders, never idle, set the pace."""
_ASK_FIRST = 16
"""Unknown digests asked about one by one before the listing's cost is even estimated."""

Snapshot = Callable[["OnHashed | None"], Manifest]
"""Snapshots the folder, telling `on_hashed` (when given) what it reads; runs on a worker thread."""


async def push_tree(store: AsyncStore, root: str | os.PathLike[str], key: str, snapshot: Snapshot, *,
                    sendable: Callable[[str], bool] | None = None,
                    prepare: Callable[[Manifest], Manifest] | None = None,
                    metadata: dict[str, str] | None = None, callback: Callback | None = None
                    ) -> tuple[Manifest, str, TransferSummary]:
    """Snapshot `root` and commit its manifest at `key`, small files sent as they are hashed.

    Args:
        snapshot: makes the manifest (`fscas.manifests.snapshot` with the caller's options).
        sendable: whether a manifest path may be sent early (False: a file the caller will leave
            out of the manifest, e.g. under a SHARED storage-profile location).
        prepare: the caller's last word on the manifest before it is committed (may raise).
        callback: progress of the upload after the snapshot (the early one has no known total).

    Returns:
        The manifest committed, its manifest hash, and the data transfer summary (both phases).
    """
    started = time.monotonic()
    checked = await begin(store)
    early = _Early(store, sendable or _always)
    workers = [asyncio.create_task(early.work()) for _ in range(max(1, store.concurrency))]
    try:
        manifest = await asyncio.to_thread(snapshot, early.offer)
    except _Stopped:
        manifest = Manifest.from_paths(())  # an upload failed: its error is raised below
    except BaseException:  # the snapshot failed, or the push was cancelled: drop what is queued
        early.error = early.error or _Stopped()
        raise
    finally:
        early.close()
        await asyncio.gather(*workers)
    early.finish()
    manifest = (prepare or _same)(manifest)
    digest, later = await commit(store, manifest, root, key, metadata=metadata, callback=callback,
                                 checked=checked, confirmed=early.confirmed)
    return manifest, digest, _combined(early, later, time.monotonic() - started)


class _Stopped(Exception):
    """Raised on the hashing thread to end the snapshot once an early upload failed."""


class _Early:
    """Small files from the hashing thread, sent by workers on the event loop; memory bounded by BUDGET
    bytes and AHEAD files."""

    def __init__(self, store: AsyncStore, sendable: Callable[[str], bool]) -> None:
        self.store, self.sendable = store, sendable
        self.loop = asyncio.get_running_loop()
        cache = store.existence_cache
        self.held = {d for k in (cache.present(store.url) if cache is not None else ())
                     if (d := keys.digest_of_key(k)) is not None}  # digests the store is known to hold
        self.taken: set[str] = set()  # digests this push has dealt with
        self.asked = 0  # HEADs asked so far
        self.pages: int | None = None  # estimated cost of listing Data/, once asked
        self.listed = False
        self.listing = asyncio.Lock()  # one estimate and one listing, however many batches ask at once
        self.items: asyncio.Queue[tuple[str, bytes, bool] | None] = asyncio.Queue()
        self.queued = self.pending = 0  # bytes, and files, waiting or being sent
        self.ahead = max(AHEAD, 8 * store.concurrency)
        self.room = asyncio.Event()  # set when room may have freed; every waiting batch rechecks (several
        # hashing threads offer at once while files come from the disk)
        self.error: BaseException | None = None
        self.closed = False
        self.sent: list[str] = []  # digests stored or found held, recorded in the existence cache at the end
        self.files = self.bytes = 0

    def offer(self, batch: list[tuple[str, str, bytes]]) -> None:
        """On the hashing thread: queue a batch, waiting while BUDGET bytes are in flight."""
        asyncio.run_coroutine_threadsafe(self._admit(batch), self.loop).result()

    async def _admit(self, batch: list[tuple[str, str, bytes]]) -> None:
        todo: list[tuple[str, bytes]] = []
        for rel, digest, data in batch:
            if digest not in self.taken and digest not in self.held and self.sendable(rel):
                self.taken.add(digest)
                todo.append((digest, data))
        if todo and not self.listed and self.asked + len(todo) >= _ASK_FIRST:
            await self._list_if_cheaper(self.asked + len(todo))
        if self.listed:
            self.sent.extend(d for d, _ in todo if d in self.held)
            todo = [(d, data) for d, data in todo if d not in self.held]
        size = sum(len(data) for _, data in todo)
        while self.error is None and not self.closed and self.pending and (
                self.queued + size > BUDGET or self.pending + len(todo) > self.ahead):
            self.room.clear()
            await self.room.wait()
        if self.error is not None or self.closed:
            raise _Stopped
        self.queued += size
        self.pending += len(todo)
        self.asked += 0 if self.listed else len(todo)
        for digest, data in todo:
            self.items.put_nowait((digest, data, not self.listed))

    async def _list_if_cheaper(self, asked: int) -> None:
        """List Data/ once the HEADs asked (and about to be) cost as much as the listing would."""
        async with self.listing:
            if self.listed:
                return
            if self.pages is None:
                self.pages = await estimated_data_pages(self.store.backend)
            if self.pages > asked:
                return
            listed = [o.key async for o in self.store.backend.list(keys.DATA + "/")]
            self.held.update(d for k in listed if (d := keys.digest_of_key(k)) is not None)
            self.listed = True

    async def work(self) -> None:
        """One sender: until `close`; after an error it drops what is queued (the push fails)."""
        while (item := await self.items.get()) is not None:
            digest, data, ask = item
            if self.error is None:
                try:
                    if not (ask and await self._held(digest)) and digest not in self.held:
                        await self.store.backend.put(keys.data_key(digest), data)
                        self.files += 1
                        self.bytes += len(data)
                    self.sent.append(digest)
                except Exception as e:  # kept, raised by `finish` as itself
                    self.error = self.error or e
            self.queued -= len(data)
            self.pending -= 1
            self.room.set()

    async def _held(self, digest: str) -> bool:
        try:
            await self.store.backend.head(keys.data_key(digest))
        except ObjectNotFound:
            return False
        return True

    def close(self) -> None:
        """No more batches: each worker ends once the queue is empty."""
        self.closed = True
        self.room.set()
        for _ in range(max(1, self.store.concurrency)):
            self.items.put_nowait(None)

    @property
    def confirmed(self) -> set[str]:
        """Digests this push stored or saw on the server (a HEAD or the listing)."""
        return set(self.sent)

    def finish(self) -> None:
        """Record what was sent (the later upload then skips it); raise the first upload error."""
        if self.sent and self.store.existence_cache is not None:
            self.store.existence_cache.add(self.store.url, (keys.data_key(d) for d in self.sent))
        if self.error is not None:
            raise self.error


def _combined(early: _Early, later: TransferSummary, seconds: float) -> TransferSummary:
    """Both phases as one transfer: what went early, the later upload counted as already present."""
    files = early.files
    return TransferSummary(files=files + later.files, bytes=early.bytes + later.bytes,
                           skipped_files=max(0, later.skipped_files - files),
                           skipped_bytes=max(0, later.skipped_bytes - early.bytes), seconds=seconds)


def _same(manifest: Manifest) -> Manifest:
    return manifest


def _always(rel: str) -> bool:
    return True
