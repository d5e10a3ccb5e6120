"""The store epoch: how pushes and gc agree that no manifest ever points at deleted data.

The epoch object (`fscas-epoch`, beside `Data/` and `Manifests/`; Deadline ignores it) holds a random
id that changes whenever the store may have lost objects, and, while a gc deletes, that gc's marker:
its id, a heartbeat counter and a lease.

- gc: list the Data candidates; wait until no other gc holds the epoch (or its lease lapsed); put
  its marker in place by compare-and-swap; read every manifest (the mark); then delete in batches,
  each one only after re-reading the epoch and finding its own marker there (beating it when due),
  and each one finished within `window(lease)` of that read or the gc stops; then swap in a new id
  (its old id back if nothing was deleted).
- push (`fscas.commit`): read the epoch, upload, then read it again. When it moved, a gc holds it or
  it vanished: wait for that gc to finish, check every object of the manifest on the server and
  upload what is gone (up to three rounds, so that a manifest is not visible with holes in it).
  Write the manifest, and read once more: if the epoch moved since the last check, wait for the gc
  holding it at that read to finish and check every object once more.

Why that is enough: a gc deletes only objects no manifest referenced when it marked, it marks after
its marker is visible, and it deletes only while that marker is still there. A gc whose marker
appears after the read that follows the manifest write therefore sees the manifest. Every other gc
either ended before that read (and a gc that deleted something ends with a new id, which the read
sees) or held the epoch at that read and is waited for before the final check. A marker changes
hands only when its gc releases it or after a full lease without a heartbeat, and a gc never
deletes later than `window(lease)` after a read that found its marker, nor later than half a lease
after its last heartbeat, so a marker taken over belongs to a gc that has stopped deleting.

What it assumes and where it cannot be exact:
- Hosts' clocks run at the same rate (no clock is compared across hosts: each measures its own
  waits), and a request the client gave up on reaches the server within `window(lease)` or never.
- Compare-and-swap where the backend offers it (`fscas.backends.base.Swappable`: S3 `If-Match`,
  GCS `ifGenerationMatch`, Azure ETags, a lock file on a folder store). A backend without it (the
  generic fsspec one: SFTP, WebDAV, FTP) or whose server ignores the condition falls back to
  read-compare-write: two gcs starting within one request of each other may then both write a
  marker; the loser finds the winner's at its next check and stops, but a delete batch it started
  before that check may overlap the winner's run. Run one gc at a time on such stores.
- The epoch object deleted by hand: a gc finding it gone stops before its next batch, and a push
  that finds it missing (after having read one, or in a store that holds data) waits `SETTLE`
  seconds, past any delete batch still in flight, before it trusts any check.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType

import attrs

from fscas import keys
from fscas.backends import Backend
from fscas.backends.base import SEND_BY, Swappable, stop_all
from fscas.errors import (
    BucketNotFound,
    ConfigError,
    DeadlinePassed,
    NotSupported,
    ObjectExists,
    ObjectNotFound,
    StoreError,
    logger,
)

__all__ = ["LEASE", "SETTLE", "Epoch", "GcLease", "ensure_epoch", "read_epoch", "wait_for_end", "window"]

log = logger(__name__)

LEASE = 60.0
"""Seconds a gc's marker stays valid without a heartbeat; it beats every quarter of that."""
LEASE_BOUNDS = (0.5, 3600.0)
"""A lease outside these bounds (or not a finite number) in a marker is treated as lapsed."""
_WINDOW_MAX = 5.0
SETTLE = 2 * _WINDOW_MAX
"""Seconds a push waits, after finding the epoch gone from a store that holds data, before it
trusts a check: by then every delete batch of a gc that saw its marker before has ended."""
_POLL = (0.05, 1.0)  # a waiting push polls the marker from every 50 ms up to every second
_TELL = 3.0  # a wait longer than this says what it waits for (and again every _TELL_AGAIN)
_TELL_AGAIN = 30.0


def window(lease: float) -> float:
    """Seconds a gc may spend on one delete batch after the read that found its marker."""
    return min(lease / 6, _WINDOW_MAX)


def _now() -> float:
    """The running loop's clock (monotonic): a test's virtual clock replaces it with the loop's."""
    return asyncio.get_running_loop().time()


@attrs.frozen(kw_only=True)
class Epoch:
    """What the epoch object says."""

    id: str
    gc: str | None = None
    """The id of the gc deleting right now, if any."""
    beat: int = 0
    lease: float = LEASE
    problem: str | None = attrs.field(default=None, eq=False)
    """Why a marker read from the store is treated as lapsed (a hand-edited lease), if it is."""

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
            epoch = cls(id=str(d["id"]), gc=str(d["gc"]), beat=int(d["beat"]), lease=LEASE)
            lease = d["lease"]
        except (ValueError, KeyError, TypeError):
            return cls(id=text)  # unreadable: a value that differs from every id we know
        if (isinstance(lease, bool) or not isinstance(lease, (int, float)) or not math.isfinite(lease)
                or not LEASE_BOUNDS[0] <= lease <= LEASE_BOUNDS[1]):
            return attrs.evolve(epoch, lease=0.0, problem=f"its lease {lease!r} is not a number of seconds within "
                                                          f"{LEASE_BOUNDS[0]:g}..{LEASE_BOUNDS[1]:g}")
        return attrs.evolve(epoch, lease=float(lease))


@attrs.frozen
class _Seen:
    """An epoch as read, with the server's tag of that version (None: absent, or no compare-and-swap)."""

    epoch: Epoch | None
    tag: str | None = None


async def _read(backend: Backend) -> _Seen:
    try:
        if isinstance(backend, Swappable):
            data, tag = await backend.get_tagged(keys.EPOCH)
            return _Seen(_decoded(backend, data), tag)
        return _Seen(_decoded(backend, await backend.get(keys.EPOCH)))
    except BucketNotFound:
        raise
    except ObjectNotFound:
        return _Seen(None)


def _decoded(backend: Backend, data: bytes) -> Epoch:
    epoch = Epoch.decode(data)
    if epoch.problem:
        log.warning("fscas: %s: the store epoch names gc %s, but %s: treated as lapsed", backend.url, epoch.gc,
                    epoch.problem)
    return epoch


async def read_epoch(backend: Backend) -> Epoch | None:
    """The epoch, or None when the store has none.

    Raises:
        BucketNotFound: the bucket (or store folder) does not exist.
    """
    return (await _read(backend)).epoch


async def _swap(backend: Backend, seen: _Seen, new: Epoch) -> _Seen | None:
    """Write `new` if the epoch is still what `seen` read: the new state, or None when it changed.

    Compare-and-swap where the backend offers it; else read, compare, write (see the module docstring).
    A write whose answer was lost and whose retry then lost is ours all the same: the epoch's bytes
    are unique to each write, so finding them there settles it.
    """
    data = new.encode()
    if isinstance(backend, Swappable):
        try:
            return _Seen(new, await backend.put_tagged(keys.EPOCH, data, tag=seen.tag))
        except ObjectExists:
            now = await _read(backend)
            return now if now.epoch is not None and now.epoch.encode() == data else None
        except NotSupported:
            pass
    try:
        now = await _read(backend)
    except BucketNotFound:  # a folder store before its first write: the write below makes it
        now = _Seen(None)
    if now.epoch != seen.epoch:
        return None
    try:
        await backend.put(keys.EPOCH, data, if_absent=seen.epoch is None and backend.capabilities.create_only)
    except ObjectExists:
        return None
    return _Seen(new)


async def _holds_data(backend: Backend) -> bool:
    async for _ in backend.list(keys.DATA + "/"):
        return True
    return False


async def _ensure(backend: Backend, *, vanished: bool = False) -> _Seen:
    """The epoch, created when the store has none. A store that holds data but no epoch lost it
    (deleted by hand) or never had one (written by Deadline or an older fscas): a gc that saw its
    marker there before may still be deleting, so this waits `SETTLE` before creating it.

    Raises:
        BucketNotFound: the bucket does not exist (a folder store is created by the write instead).
    """
    while True:
        gone: BucketNotFound | None = None
        try:
            seen = await _read(backend)
        except BucketNotFound as missing:
            seen, gone = _Seen(None), missing
        if seen.epoch is not None:
            return seen
        if gone is None and (vanished or await _holds_data(backend)):
            log.warning("fscas: %s: the store epoch object is missing (deleted by hand, or the store was written "
                        "by Deadline or an older fscas): waiting %g s for any gc still deleting", backend.url, SETTLE)
            await asyncio.sleep(SETTLE)
            vanished = False
        try:
            if (made := await _swap(backend, seen, Epoch(id=uuid.uuid4().hex))) is not None:
                return made
        except StoreError:
            if gone is not None:
                raise gone from None  # the bucket is missing: that, not the refused write, is the cause
            raise


async def ensure_epoch(backend: Backend) -> Epoch:
    """Read the epoch, creating it (by compare-and-swap where the backend can) when the store has none.

    Raises:
        BucketNotFound: the bucket does not exist (a folder store is created by the write instead).
    """
    seen = await _ensure(backend)
    assert seen.epoch is not None
    return seen.epoch


async def wait_for_end(backend: Backend, seen: Epoch | None) -> Epoch:
    """Wait until the gc that holds `seen` (if any) has finished; return the epoch read then.

    Only that gc is waited for: one that starts later may already hold the returned epoch. A marker
    that does not beat for its lease (measured on this host's clock) belongs to a gc that died: it
    is replaced, by compare-and-swap, with a new id, which also tells that gc, should it wake, to
    stop. `seen` None means the epoch vanished: see `_ensure`.
    """
    found = (await _outwait(backend, _Seen(seen), vanished=seen is None)).epoch
    assert found is not None
    return found


async def _outwait(backend: Backend, seen: _Seen, *, vanished: bool = False) -> _Seen:
    """`wait_for_end` on a tagged read; the state returned is never absent."""
    if seen.epoch is None:
        return await _ensure(backend, vanished=vanished)
    holder = seen.epoch.gc
    started = last_change = told = _now()
    delay = _POLL[0]
    while seen.epoch is not None and holder is not None and seen.epoch.gc == holder:
        epoch = seen.epoch
        if _now() - last_change >= epoch.lease:
            if (fresh := await _swap(backend, seen, Epoch(id=uuid.uuid4().hex))) is not None:
                log.info("fscas: %s: gc %s sent no heartbeat for %g s: presumed dead", backend.url, holder,
                         epoch.lease)
                return fresh
        elif _now() - told >= (_TELL if told == started else _TELL_AGAIN):
            told = _now()
            log.warning("fscas: %s: waiting for gc %s to finish (%.0f s so far; presumed dead after %g s without a "
                        "heartbeat)", backend.url, holder, told - started, epoch.lease)
        await asyncio.sleep(delay)
        delay = min(delay * 2, _POLL[1])
        now = await _read(backend)
        if now.epoch is None:
            return await _ensure(backend, vanished=True)
        if now.epoch != epoch:
            last_change = _now()
        seen = now
    return seen


class GcLease:
    """A gc's hold on the epoch while it marks and deletes (an async context manager).

    On entry it waits until no other gc holds the epoch, then swaps its marker in. `renew()` beats
    the marker when a quarter of the lease has passed; `deleting(keys, delete)` deletes a batch only
    after a read that finds the marker still there, and within `window(lease)` of that read. Both
    raise `StoreError` when the hold is lost (taken over, the epoch gone, a beat or a batch too
    late): better no delete than one a push no longer waits for. On exit the epoch gets a new id if
    anything was deleted (`deleted`), else its old id back, so existence caches stay valid after a
    gc that removed nothing.
    """

    def __init__(self, backend: Backend, *, lease: float = LEASE) -> None:
        if not (math.isfinite(lease) and LEASE_BOUNDS[0] <= lease <= LEASE_BOUNDS[1]):
            raise ConfigError(f"gc lease {lease!r}: give seconds within {LEASE_BOUNDS[0]:g}..{LEASE_BOUNDS[1]:g}")
        self.backend, self.lease = backend, lease
        self.deleted = False
        self._held: _Seen | None = None
        self._beaten = 0.0  # when the last beat (or the marker's first write) was sent
        self._late = False  # a batch overran its window: requests may still be on their way

    @property
    def _url(self) -> str:
        return self.backend.url

    async def __aenter__(self) -> GcLease:
        seen = await _ensure(self.backend)
        while True:
            while seen.epoch is not None and seen.epoch.running:  # another gc's: wait for its end or lapse
                seen = await _outwait(self.backend, seen)
            assert seen.epoch is not None
            mine = Epoch(id=seen.epoch.id, gc=uuid.uuid4().hex, beat=0, lease=self.lease)
            sent = _now()
            if (held := await _swap(self.backend, seen, mine)) is not None:
                self._held, self._beaten = held, sent
                return self
            seen = await _ensure(self.backend)

    def _lost(self, why: str) -> StoreError:
        return StoreError(f"{self._url}: gc stopped before deleting more: {why}")

    async def renew(self) -> None:
        """Beat the marker if a quarter of the lease has passed. Raises StoreError when the hold is lost."""
        assert self._held is not None
        if _now() - self._beaten >= self.lease / 4:
            await self._beat()

    async def _beat(self) -> None:
        assert self._held is not None and self._held.epoch is not None
        since = _now() - self._beaten
        if since > self.lease / 2:
            raise self._lost(f"its lease of {self.lease:g} s lapsed ({since:.0f} s since the last heartbeat)")
        sent = _now()
        held = self._held.epoch
        beaten = await _swap(self.backend, self._held, attrs.evolve(held, beat=held.beat + 1))
        if beaten is None:
            raise self._lost("another client took over the store epoch (or it was deleted)")
        self._held, self._beaten = beaten, sent

    async def _confirm(self) -> float:
        """Make sure the marker is still ours; the time of the read (or beat) that showed it."""
        assert self._held is not None
        if _now() - self._beaten >= self.lease / 4:
            await self._beat()
            return self._beaten
        sent = _now()
        now = await _read(self.backend)
        if now.epoch != self._held.epoch or (self._held.tag is not None and now.tag != self._held.tag):
            raise self._lost("another client took over the store epoch" if now.epoch is not None
                             else "the store epoch object is gone (deleted by hand?)")
        return sent

    async def deleting(self, data_keys: list[str], delete: Callable[[str], Awaitable[None]]) -> None:
        """Delete `data_keys` with `delete`, all within `window(lease)` of a read that shows the marker
        (each request carries that deadline in `SEND_BY`: one that would go out later is not sent).

        Raises:
            StoreError: the hold is lost, or the batch overran its window (nothing more is sent).
        """
        shown = await self._confirm()
        deadline = shown + window(self.lease)
        self.deleted = True

        async def one(key: str) -> None:
            SEND_BY.set(deadline)  # this task's own context: the backend checks it as the request leaves
            await delete(key)

        tasks = [asyncio.ensure_future(one(k)) for k in data_keys]
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.gather(*tasks)
        except (TimeoutError, DeadlinePassed):
            self._late = True
            raise self._lost(f"deleting {len(data_keys)} objects took longer than {window(self.lease):g} s, all "
                             "its hold on the store epoch covers (a slow or stalled request)") from None
        finally:
            await stop_all(tasks)  # after any failure, nothing more goes out

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._held is not None and self._held.epoch is not None
        if self._late:  # let requests given up on land while the marker still holds pushes back
            await asyncio.sleep(window(self.lease))
        now = await _read(self.backend)
        if now.epoch is None:
            if self.deleted:  # the epoch was deleted by hand meanwhile: a new id tells pushes to re-check
                await _swap(self.backend, now, Epoch(id=uuid.uuid4().hex))
            return
        if now.epoch != self._held.epoch:
            return  # taken over: the new id is already there
        done = Epoch(id=uuid.uuid4().hex) if self.deleted or e is not None else Epoch(id=self._held.epoch.id)
        await _swap(self.backend, now, done)

