"""The store epoch: how pushes and gc agree that no manifest ever points at deleted data.

The epoch object (`fscas-epoch`, beside `Data/` and `Manifests/`; Deadline ignores it) holds a random
id that changes whenever the store may have lost objects, and, while a gc deletes, that gc's marker:
its id, a heartbeat counter and a lease.

- gc: list the Data candidates, write its marker, read every manifest (the mark), delete the
  unreferenced candidates (renewing the marker, and stopping if another client took it over), then
  write a new id (the old one back if nothing was deleted).
- push (`fscas.commit`): read the epoch, upload, then read it again. When it moved, or a gc holds
  it: wait for that gc to finish, check every object of the manifest on the server and upload what
  is gone (up to three rounds, so that a manifest is not visible with holes in it). Write the
  manifest, and read once more: if the epoch moved since the last check, wait for the gc holding
  it at that read to finish and check every object once more.

Why that is enough: a gc deletes only objects no manifest referenced when it marked, and it marks
after its marker is visible. A gc whose marker appears after the read that follows the manifest
write therefore sees the manifest. Every other gc either ended before the last check (and a gc
that deleted something ends with a new id, which that read would see) or held the epoch at that
read, and is waited for before the final check. Each push waits for at most four gc runs, so a
gc in a loop cannot starve it. No grace period or clock of another host is involved; the lease
only decides when a silent gc is presumed dead (its own monotonic clock tells the gc when to stop,
the waiting push's monotonic clock when to take over).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from types import TracebackType

import attrs

from fscas import keys
from fscas.backends import Backend
from fscas.errors import BucketNotFound, ObjectExists, ObjectNotFound, StoreError

__all__ = ["LEASE", "Epoch", "GcLease", "ensure_epoch", "read_epoch", "wait_for_end"]

LEASE = 60.0
"""Seconds a gc's marker stays valid without a heartbeat; it beats every quarter of that."""
_POLL = (0.05, 1.0)  # a waiting push polls the marker from every 50 ms up to every second


@attrs.frozen(kw_only=True)
class Epoch:
    """What the epoch object says."""

    id: str
    gc: str | None = None
    """The id of the gc deleting right now, if any."""
    beat: int = 0
    lease: float = LEASE

    @property
    def running(self) -> bool:
        return self.gc is not None

    def encode(self) -> bytes:
        if self.gc is None:
            return self.id.encode()  # the plain id: what fscas before the gc protocol wrote too
        return json.dumps({"id": self.id, "gc": self.gc, "beat": self.beat, "lease": self.lease}).encode()

    @classmethod
    def decode(cls, data: bytes) -> Epoch:
        text = data.decode("utf-8", "replace").strip()
        if not text.startswith("{"):
            return cls(id=text)
        try:
            d = json.loads(text)
            return cls(id=str(d["id"]), gc=str(d["gc"]), beat=int(d["beat"]), lease=float(d["lease"]))
        except (ValueError, KeyError, TypeError):
            return cls(id=text)  # unreadable: a value that differs from every id we know


async def read_epoch(backend: Backend) -> Epoch | None:
    """The epoch, or None when the store has none yet.

    Raises:
        BucketNotFound: the bucket (or store folder) does not exist.
    """
    try:
        return Epoch.decode(await backend.get(keys.EPOCH))
    except BucketNotFound:
        raise
    except ObjectNotFound:
        return None


async def ensure_epoch(backend: Backend) -> Epoch:
    """Read the epoch, creating it (create-only where the backend can) when the store has none.

    Raises:
        BucketNotFound: the bucket does not exist (a folder store is created by the write instead).
    """
    try:
        if (epoch := await read_epoch(backend)) is not None:
            return epoch
    except BucketNotFound as missing:
        try:
            return await _create(backend)
        except StoreError:
            raise missing from None  # the bucket is missing: that, not the refused write, is the cause
    return await _create(backend)


async def _create(backend: Backend) -> Epoch:
    fresh = Epoch(id=uuid.uuid4().hex)
    try:
        await backend.put(keys.EPOCH, fresh.encode(), if_absent=backend.capabilities.create_only)
    except ObjectExists:  # another client created it first: theirs counts
        return await read_epoch(backend) or fresh
    return fresh


async def wait_for_end(backend: Backend, seen: Epoch | None) -> Epoch:
    """Wait until the gc that holds `seen` (if any) has finished; return the epoch read then.

    Only that gc is waited for: one that starts later may already hold the returned epoch. A marker
    that does not beat for its lease (measured on this host's monotonic clock) belongs to a gc that
    died: it is replaced by a new id, which also tells that gc, should it wake, to stop.
    """
    epoch, last_change, delay = seen, time.monotonic(), _POLL[0]
    while epoch is not None and seen is not None and seen.gc is not None and epoch.gc == seen.gc:
        if time.monotonic() - last_change > epoch.lease:
            fresh = Epoch(id=uuid.uuid4().hex)
            await backend.put(keys.EPOCH, fresh.encode())
            return fresh
        await asyncio.sleep(delay)
        delay = min(delay * 2, _POLL[1])
        now = await read_epoch(backend)
        if now != epoch:
            last_change = time.monotonic()
        epoch = now
    return epoch or await ensure_epoch(backend)


class GcLease:
    """A gc's hold on the epoch while it marks and deletes (an async context manager).

    On entry the marker replaces the epoch; `renew()` beats it when a quarter of the lease has
    passed and raises if another client took it over or a beat came too late (this process may
    have been stopped: better no delete than a delete a push no longer waits for). On exit the
    epoch gets a new id if anything was deleted (`deleted = True`), else its old id back, so
    existence caches stay valid after a gc that removed nothing.
    """

    def __init__(self, backend: Backend, *, lease: float = LEASE) -> None:
        self.backend, self.lease = backend, lease
        self.deleted = False
        self._before: Epoch | None = None
        self._held: Epoch | None = None
        self._beaten = 0.0

    async def __aenter__(self) -> GcLease:
        self._before = await ensure_epoch(self.backend)
        held = Epoch(id=self._before.id, gc=uuid.uuid4().hex, beat=0, lease=self.lease)
        await self.backend.put(keys.EPOCH, held.encode())
        self._held, self._beaten = held, time.monotonic()
        return self

    async def renew(self) -> None:
        """Beat the marker if due. Raises StoreError when the lease is lost."""
        assert self._held is not None
        since = time.monotonic() - self._beaten
        if since < self.lease / 4:
            return
        if since > self.lease / 2:
            raise StoreError(f"{self.backend.url}: gc stopped before deleting: its lease of {self.lease:.0f} s "
                             f"lapsed ({since:.0f} s since the last renewal)")
        if await read_epoch(self.backend) != self._held:
            raise StoreError(f"{self.backend.url}: gc stopped: another client took over the store epoch")
        self._held = attrs.evolve(self._held, beat=self._held.beat + 1)
        await self.backend.put(keys.EPOCH, self._held.encode())
        self._beaten = time.monotonic()

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._before is not None and self._held is not None
        if await read_epoch(self.backend) != self._held:
            return  # taken over: the new id is already there
        done = Epoch(id=uuid.uuid4().hex) if self.deleted or e is not None else self._before
        await self.backend.put(keys.EPOCH, done.encode())
