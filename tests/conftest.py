"""Shared fixtures: the vectors directory beside the repository (../shared/vectors)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FSCAS_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """The Deadline test vectors: {"manifests": ..., "xxh128": ...}."""
    folder = SHARED / "vectors"
    if not folder.is_dir():
        pytest.fail(f"test vectors not found at {folder} (set FSCAS_SHARED)")
    return {name: json.loads((folder / f"{name}.json").read_text()) for name in ("manifests", "xxh128")}


BACKENDS = ["file", "memory", "moto", "seaweedfs", "gcs", "azure"]
_EMULATOR_FIXTURE = {"moto": "moto_server", "seaweedfs": "seaweedfs", "gcs": "fake_gcs", "azure": "azurite"}


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


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A `fscas.Store` on each backend, empty, with its own existence cache."""
    import fscas
    from fscas.existence import ExistenceCache

    url, options = store_url_for(request.param, request, tmp_path)
    s = fscas.open_store(url, existence_cache=ExistenceCache(tmp_path / "existence.db"), **options)
    yield s
    s.close()
