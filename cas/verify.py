"""Check that a store holds every object its manifests reference, with the right size and bytes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from fscas import keys
from fscas.backends import Backend
from fscas.errors import IntegrityError, ObjectNotFound
from fscas.fetching import read_verified
from fscas.manifests import Manifest, ManifestPath
from fscas.paths import safe_join
from fscas.transfer import in_lanes, send_file

if TYPE_CHECKING:
    from fscas.store import AsyncStore

__all__ = ["VerifyReport", "repair", "verify_objects"]


@attrs.frozen(kw_only=True)
class VerifyReport:
    """What `verify` found. `ok` when nothing is missing or corrupt."""

    checked: int
    bytes: int
    missing: tuple[str, ...]
    """Digests with no Data object (neither `.xxh128` nor legacy key)."""
    corrupt: tuple[str, ...]
    """One line per bad object: its key and what is wrong."""
    corrupt_digests: tuple[str, ...] = ()
    """The digests of those bad objects."""

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
    corrupt_digests: list[str] = []

    async def one(digest: str, size: int | None) -> int:
        async with slots:
            try:
                return await read_verified(backend, digest, size)
            except ObjectNotFound:
                missing.append(digest)
            except IntegrityError as e:
                corrupt.append(str(e))
                corrupt_digests.append(digest)
                return size or 0  # read too (it is what was checked and found wrong)
            return 0

    total = sum(await asyncio.gather(*(one(d, s) for d, s in sizes.items())))
    return VerifyReport(checked=len(sizes), bytes=total, missing=tuple(sorted(missing)), corrupt=tuple(sorted(corrupt)),
                        corrupt_digests=tuple(sorted(corrupt_digests)))


async def repair(store: AsyncStore, manifest: Manifest, root: str | os.PathLike[str]) -> VerifyReport:
    """Read back every object `manifest` references and upload again, from `root`, each one that is
    missing or whose bytes do not match its key (a corrupt object is overwritten in place).

    Returns the report of what was found before the repair.

    Raises:
        IntegrityError: a local file no longer matches the manifest (nothing is uploaded for it).
    """
    report = await verify_objects(store.backend, [manifest], concurrency=store.concurrency)
    first: dict[str, ManifestPath] = {}
    for p in manifest.paths:
        first.setdefault(p.hash, p)
    root_path = Path(root)
    root_real = os.path.realpath(root_path)

    async def one(digest: str) -> None:
        p = first[digest]
        await send_file(store.backend, safe_join(root_path, p.path), root_real, digest, p.size, lambda n: None)

    bad = sorted({*report.missing, *report.corrupt_digests})
    await in_lanes(one, (bad, store.concurrency))
    store.forget([keys.data_key(d) for d in bad])
    return report
