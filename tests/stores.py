"""Fresh stores on every backend the tests run against (a module of its own: two conftest modules exist)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import fscas

BACKENDS = ["file", "memory", "moto", "seaweedfs", "gcs", "azure", "sftp", "webdav", "ftp"]
_EMULATOR_FIXTURE = {"moto": "moto_server", "seaweedfs": "seaweedfs", "gcs": "fake_gcs", "azure": "azurite",
                     "sftp": "sftp_server", "webdav": "webdav_server", "ftp": "ftp_server"}


def store_url_for(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """A fresh, empty store URL (and backend options) on the backend `kind`."""
    from fscas.conformance.plugin import unique_bucket

    if kind == "file":
        return str(tmp_path / "store"), {}
    if kind == "memory":
        return "memory://test", {}
    emulator = request.getfixturevalue(_EMULATOR_FIXTURE[kind])
    bucket = unique_bucket()
    emulator.create_bucket(bucket)
    return emulator.store_url(bucket, "root/prefix"), emulator.options()


def counted_calls(store: fscas.AsyncStore) -> Counter[str]:
    """Count the store's backend calls from now on, by method and first key segment ("put Data")."""
    calls: Counter[str] = Counter()
    backend = store.backend
    for name in ("head", "get", "put", "delete"):
        original = getattr(backend, name)

        async def counted(key: str, *a: Any, _f: Any = original, _n: str = name, **k: Any) -> Any:
            calls[f"{_n} {key.split('/', 1)[0]}"] += 1
            return await _f(key, *a, **k)

        setattr(backend, name, counted)
    listing = backend.list

    def counted_list(prefix: str) -> Any:
        calls["list"] += 1
        return listing(prefix)

    backend.list = counted_list  # type: ignore[method-assign]
    return calls


def evict(path: str | os.PathLike[str], offset: int = 0, length: int = 0) -> None:
    """Drop a file's pages from the page cache (synced first; no root needed): its next read is from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
