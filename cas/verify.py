"""Check that a store holds every object its manifests reference, with the right size and bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import attrs

from fscas import keys
from fscas.backends import Backend
from fscas.errors import IntegrityError, ObjectNotFound
from fscas.manifests import Manifest
from fscas.transfer import read_verified

__all__ = ["VerifyReport", "verify_objects"]


@attrs.frozen(kw_only=True)
class VerifyReport:
    """What `verify` found. `ok` when nothing is missing or corrupt."""

    checked: int
    bytes: int
    missing: tuple[str, ...]
    """Digests with no Data object (neither `.xxh128` nor legacy key)."""
    corrupt: tuple[str, ...]
    """One line per bad object: its key and what is wrong."""

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt


async def verify_objects(backend: Backend, manifests: Iterable[Manifest] | None, *, concurrency: int = 16
                         ) -> VerifyReport:
    """Read back every object the manifests reference (or every Data object, when None) and hash it."""
    sizes: dict[str, int | None] = {}
    if manifests is None:
        async for o in backend.list(keys.DATA + "/"):
            if (d := keys.digest_of_key(o.key)) is not None:
                sizes[d] = o.size
    else:
        for m in manifests:
            sizes.update((p.hash, p.size) for p in m.paths)
    slots = asyncio.Semaphore(concurrency)
    missing: list[str] = []
    corrupt: list[str] = []

    async def one(digest: str, size: int | None) -> int:
        async with slots:
            try:
                return await read_verified(backend, digest, size)
            except ObjectNotFound:
                missing.append(digest)
            except IntegrityError as e:
                corrupt.append(str(e))
            return 0

    total = sum(await asyncio.gather(*(one(d, s) for d, s in sizes.items())))
    return VerifyReport(checked=len(sizes), bytes=total, missing=tuple(sorted(missing)), corrupt=tuple(sorted(corrupt)))
