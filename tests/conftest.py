"""Shared fixtures: the Deadline test vectors (tests/vectors) and a store on every backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from stores import BACKENDS, store_url_for
from vectors.regenerate import load

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """The Deadline test vectors: {"manifests": ..., "xxh128": ...} (tests/vectors/README.md)."""
    return load()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A `fscas.Store` on each backend, empty, with its own existence cache."""
    import fscas
    from fscas.existence import ExistenceCache

    url, options = store_url_for(request.param, request, tmp_path)
    s = fscas.open_store(url, existence_cache=ExistenceCache(tmp_path / "existence.db"), **options)
    yield s
    s.close()
