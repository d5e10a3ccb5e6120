"""Deadline defects D2 and D3 (reference §7b), each reproduced against fscas on every backend.

D1 (a stale hash stores new bytes) is covered in test_store.py: a changed file is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import fscas
from fscas.manifests import snapshot
from fscas.runner import run_sync


def _two_files(src: Path) -> fscas.Manifest:
    src.mkdir()
    (src / "stays.txt").write_bytes(b"stays")
    (src / "goes.txt").write_bytes(b"deleted between hashing and upload")
    return snapshot(src, hash_cache=False)


def test_d2_a_missing_file_is_not_cached_as_present(store: fscas.Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    m = _two_files(src)
    (src / "goes.txt").unlink()
    with pytest.raises(fscas.SnapshotError, match=r"goes\.txt"):
        store.upload(m, src)
    gone = next(p for p in m.paths if p.path == "goes.txt")
    assert gone.hash in store.missing([gone.hash])  # the cache did not record it
    assert not store.has(gone.hash)
    cache = store.aio._cache
    assert cache is not None
    for key in cache.present(store.url):  # whatever the cache holds, the server holds
        run_sync(store.aio.backend.head(key))


def test_d3_no_manifest_when_data_failed(store: fscas.Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    m = _two_files(src)
    (src / "goes.txt").unlink()
    with pytest.raises(fscas.SnapshotError):
        store.push(m, src, farm_id="farm-1", queue_id="queue-1")

    async def manifests() -> list[str]:
        return [o.key async for o in store.aio.backend.list("Manifests/")]

    assert run_sync(manifests()) == []  # a manifest never points at data that is not there
