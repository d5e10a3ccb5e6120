"""Garbage collection: Data objects that no manifest under the store's prefix references."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fscas import keys
from fscas.summary import GcReport

if TYPE_CHECKING:
    from fscas.store import AsyncStore

__all__ = ["collect"]


async def collect(store: AsyncStore, *, delete: bool, grace_seconds: float) -> GcReport:
    """Mark every digest the store's manifests reference, then sweep (or only list) the rest.

    Objects younger than `grace_seconds` are kept: an upload in progress writes its data before
    its manifest. A manifest that cannot be read stops gc before anything is deleted. Deleted keys
    leave the existence cache first, so a later upload never trusts them.
    """
    referenced: set[str] = set()
    manifests = 0
    async for o in store.backend.list(keys.MANIFESTS + "/"):
        referenced.update(p.hash for p in (await store.get_manifest(o.key)).paths)
        manifests += 1
    cutoff = time.time() - grace_seconds
    unreferenced = [o async for o in store.backend.list(keys.DATA + "/")
                    if (d := keys.digest_of_key(o.key)) is not None and d not in referenced
                    and (o.last_modified or 0) <= cutoff]
    if delete:
        store.forget([o.key for o in unreferenced])
        for o in unreferenced:
            await store.backend.delete(o.key)
        if unreferenced:
            await store._check_epoch(bump=True)  # other clients' caches may list what was deleted
    return GcReport(manifests=manifests, referenced=len(referenced), unreferenced=tuple(o.key for o in unreferenced),
                    unreferenced_bytes=sum(o.size for o in unreferenced), deleted=delete)
