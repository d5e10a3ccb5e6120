"""Writing a manifest: its data first, the manifest last, and never over data a concurrent gc removed.

See `fscas.epoch` for the protocol and why it holds. A push that returns has a complete manifest in
the store; if the repair after a racing gc fails, the manifest it wrote is removed again.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING

import attrs

from fscas import keys
from fscas.epoch import Epoch, ensure_epoch, read_epoch, wait_for_end
from fscas.errors import ObjectExists, StoreError
from fscas.manifests import Manifest, encode, manifest_hash
from fscas.summary import TransferSummary

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from fscas.store import AsyncStore

__all__ = ["SAMPLE", "Entry", "Send", "begin", "commit", "commit_entries", "upload_checked"]

SAMPLE = 8  # cache-answered digests re-checked with HEAD before a manifest is written
_ROUNDS = 3  # repairs before the manifest is written; after it, one more at most


async def begin(store: AsyncStore) -> Epoch:
    """The epoch a commit starts from: read (made, in a new store) before its first upload."""
    with _store_level_errors():
        checked = await ensure_epoch(store.backend)
    _sync_cache(store, checked)
    return checked


Send = Callable[[bool, "Callback | None"], Awaitable[TransferSummary]]
"""`send(use_cache, callback)`: put on the server every object the manifests name that it lacks
(asking the existence cache first when `use_cache`), return what moved. A local upload reads files;
a store-to-store copy reads the source store (`fscas.copying`)."""


@attrs.frozen
class Entry:
    """One manifest object to write: its key, its exact bytes, its metadata (Deadline's names)."""

    key: str
    data: bytes
    metadata: dict[str, str] | None = None


async def commit(store: AsyncStore, manifest: Manifest, root: str | os.PathLike[str], key: str, *,
                 metadata: dict[str, str] | None = None, callback: Callback | None = None,
                 checked: Epoch | None = None, confirmed: Collection[str] = ()) -> tuple[str, TransferSummary]:
    """Upload the files of `manifest` the store lacks, then write the manifest at `key` (create-only).

    `checked`: the epoch from `begin`, when data for this manifest went up before this call (a gc
    that ran since then is noticed and repaired like one during the upload here). `confirmed`:
    digests that data stored or found on the server, not worth re-checking.

    Returns:
        The manifest hash and the data transfer summary.
    """
    async def send(use_cache: bool, cb: Callback | None) -> TransferSummary:
        return await store.upload(manifest, root, callback=cb, use_cache=use_cache, check_cache=False)

    data = encode(manifest)
    summary, _ = await commit_entries(store, [Entry(key, data, metadata)], {p.hash for p in manifest.paths}, send,
                                      callback=callback, checked=checked, confirmed=confirmed)
    return manifest_hash(data), summary


async def commit_entries(store: AsyncStore, entries: Sequence[Entry], digests: Collection[str], send: Send, *,
                         callback: Callback | None = None, checked: Epoch | None = None,
                         confirmed: Collection[str] = (), existing_ok: bool = False
                         ) -> tuple[TransferSummary, list[str]]:
    """`send` the objects `digests` name, then write `entries` (create-only), through the epoch protocol.

    With `existing_ok`, an entry whose key another writer created meanwhile is left as it is and
    its key returned (the caller compares); otherwise `ObjectExists` propagates.

    Returns:
        What `send` moved, and the keys of the entries found already written.
    """
    if checked is None:
        checked = await begin(store)
    summary = await upload_checked(store, digests, send, callback, confirmed)
    for _ in range(_ROUNDS):  # before a manifest is visible: repair after gc runs that overlapped the upload
        with _store_level_errors():
            now = await read_epoch(store.backend)
            if _unchanged(checked, now):
                break
            checked = await _repair(store, now, send)
    written: list[str] = []
    existed: list[str] = []
    try:
        for entry in entries:
            try:
                await store.backend.put(entry.key, entry.data, metadata=entry.metadata, if_absent=True)
            except ObjectExists:
                if not existing_ok:
                    raise
                existed.append(entry.key)
                continue
            written.append(entry.key)
        with _store_level_errors():
            if not _unchanged(checked, now := await read_epoch(store.backend)):
                await _repair(store, now, send)  # final: later gc runs see the manifests
    except BaseException:
        for key in written:
            with contextlib.suppress(StoreError):  # never leave a manifest whose data could not be restored
                await store.backend.delete(key)
        raise
    return summary, existed


def _unchanged(checked: Epoch, now: Epoch | None) -> bool:
    """No gc deleted anything since `checked` was read, and none holds the epoch now."""
    return now == checked and not now.running


async def _repair(store: AsyncStore, now: Epoch | None, send: Send) -> Epoch:
    """Wait for the gc holding `now` to end, then check every object on the server and send what is gone.

    Returns the epoch read before the check: an unchanged read later means no gc deleted since.
    """
    quiet = await wait_for_end(store.backend, now)
    _sync_cache(store, quiet)
    await send(False, None)
    return quiet


async def upload_checked(store: AsyncStore, digests: Collection[str], send: Send, callback: Callback | None,
                         confirmed: Collection[str]) -> TransferSummary:
    """Send, then HEAD a random sample of what the existence cache answered for (but `confirmed`).

    The cache may be stale for reasons no epoch records (a bucket lifecycle rule: Deadline issue
    #634); if any sampled object is gone, the store's entries are dropped and every object is asked
    about again.
    """
    summary = await send(True, callback)
    unconfirmed = sorted(set(digests).difference(confirmed))
    if summary.skipped_files and store.existence_cache is not None and unconfirmed:
        sample = [keys.data_key(d) for d in random.sample(unconfirmed, min(SAMPLE, len(unconfirmed)))]
        if len(await store.present(sample)) < len(sample):
            store.forget()
            summary = await send(False, callback)
    return summary


def _sync_cache(store: AsyncStore, epoch: Epoch) -> None:
    """Drop the store's existence-cache entries recorded under another epoch id."""
    cache = store.existence_cache
    if cache is not None and not epoch.running and cache.epoch(store.url) != epoch.id:
        store.forget()
        cache.set_epoch(store.url, epoch.id)


@contextlib.contextmanager
def _store_level_errors() -> Iterator[None]:
    """Errors about the epoch object are errors about the store: the internal key stays out of them."""
    try:
        yield
    except StoreError as e:
        message = str(e).replace(f": {keys.EPOCH}:", ":")
        if message == str(e):
            raise
        raise type(e)(message) from e
