"""Garbage collection: Data objects that no manifest under the store's prefix references."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fscas import keys
from fscas.backends import ObjectInfo
from fscas.epoch import LEASE, GcLease
from fscas.summary import GcReport

if TYPE_CHECKING:
    from fscas.store import AsyncStore

__all__ = ["collect"]

_BATCH = 64  # deletes in flight at once; the marker is checked before each batch


async def collect(store: AsyncStore, *, delete: bool, grace_seconds: float, lease: float = LEASE) -> GcReport:
    """List the Data objects no manifest references (older than `grace_seconds`); with `delete`, remove them.

    Deleting follows `fscas.epoch`: the candidates are listed, the gc's marker replaces the store
    epoch (once no other gc holds it), and only then are the manifests read, so a manifest a push
    writes meanwhile is either seen here or re-checked by that push; each delete batch goes out only
    while the marker is provably still this gc's. The grace period only saves work (recent uploads are not
    candidates); safety does not depend on it or on any clock. A manifest that cannot be read stops
    gc before anything is deleted.
    """
    cutoff = time.time() - grace_seconds
    candidates: list[ObjectInfo] = []
    young: list[str] = []  # digests of objects within the grace period: only counted, if unreferenced
    async for o in store.backend.list(keys.DATA + "/"):
        if (digest := keys.digest_of_key(o.key)) is not None:
            if (o.last_modified or 0) <= cutoff:
                candidates.append(o)
            else:
                young.append(digest)
    if not delete or not candidates:
        referenced, manifests = await _mark(store, None)
        return _report(candidates, referenced, manifests, young, deleted=False)
    async with GcLease(store.backend, lease=lease) as held:
        referenced, manifests = await _mark(store, held)
        doomed = [o for o in candidates if keys.digest_of_key(o.key) not in referenced]
        store.forget([o.key for o in doomed])  # before deleting: a crash leaves no entry for a gone object
        for start in range(0, len(doomed), _BATCH):
            await held.deleting([o.key for o in doomed[start:start + _BATCH]], store.backend.delete)
    return _report(candidates, referenced, manifests, young, deleted=True)


async def _mark(store: AsyncStore, held: GcLease | None) -> tuple[set[str], int]:
    """Every digest the store's manifests reference, and how many manifests there are."""
    referenced: set[str] = set()
    manifests = 0
    async for o in store.backend.list(keys.MANIFESTS + "/"):
        if held is not None:
            await held.renew()
        referenced.update(p.hash for p in (await store.get_manifest(o.key)).paths)
        manifests += 1
    return referenced, manifests


def _report(candidates: list[ObjectInfo], referenced: set[str], manifests: int, young: list[str], *,
            deleted: bool) -> GcReport:
    unreferenced = [o for o in candidates if keys.digest_of_key(o.key) not in referenced]
    return GcReport(manifests=manifests, referenced=len(referenced), unreferenced=tuple(o.key for o in unreferenced),
                    unreferenced_bytes=sum(o.size for o in unreferenced), deleted=deleted,
                    kept_for_grace=sum(1 for digest in young if digest not in referenced))
