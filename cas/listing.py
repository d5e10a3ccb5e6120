"""What a store holds: its manifests (Deadline's input and output keys) and its Data objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

import attrs

from fscas import keys

if TYPE_CHECKING:
    from fscas.backends import Backend

__all__ = ["ManifestKind", "StoredManifest", "estimated_data_pages", "list_manifests"]

ManifestKind = Literal["input", "output", "other"]


@attrs.frozen(kw_only=True)
class StoredManifest:
    """One manifest object under `Manifests/`, as the listing gives it (nothing is read)."""

    key: str
    kind: ManifestKind
    """`input` (`.../Inputs/<guid>/<hash>_input`), `output` (`..._output`), or `other` (uploaded by name)."""
    size: int
    last_modified: float | None
    """Seconds since the epoch, when the server says."""


def kind_of(key: str) -> ManifestKind:
    """Which of Deadline's manifest keys `key` is, by its shape."""
    parts = key.split("/")
    if len(parts) == 6 and parts[3] == "Inputs" and parts[5].endswith("_input"):
        return "input"
    if parts[-1].endswith("_output") and len(parts) >= 7:
        return "output"
    return "other"


async def list_manifests(backend: Backend, *, kind: ManifestKind | None = None, farm_id: str | None = None,
                         queue_id: str | None = None) -> AsyncIterator[StoredManifest]:
    """The manifests under the store, in key order per listing page, filtered by kind, farm and queue."""
    prefix = "/".join([keys.MANIFESTS, *(x for x in (farm_id, queue_id if farm_id else None) if x)]) + "/"
    if kind == "input" and farm_id and queue_id:
        prefix += "Inputs/"
    async for info in backend.list(prefix):
        found = kind_of(info.key)
        if kind is not None and found != kind:
            continue
        if queue_id and not farm_id and info.key.split("/")[2:3] != [queue_id]:
            continue
        yield StoredManifest(key=info.key, kind=found, size=info.size, last_modified=info.last_modified)


PAGE = 1000
"""Keys per listing page (S3's and most servers' maximum)."""


async def estimated_data_pages(backend: Backend) -> int:
    """About how many pages a listing of `Data/` takes, from one listing of `Data/00`: digests are
    uniformly spread over hex, so that prefix holds about 1/256 of them (dvc-objects' estimate)."""
    sample = 0
    async for _ in backend.list(keys.DATA + "/00"):
        sample += 1
    return sample * 256 // PAGE + 1
