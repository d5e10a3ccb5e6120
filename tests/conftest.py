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


# This project's own short names for the plugin's emulator fixtures (fscas.conformance.plugin).
@pytest.fixture(scope="session")
def moto_server(fscas_moto: Any) -> Any:
    return fscas_moto


@pytest.fixture(scope="session")
def seaweedfs(fscas_seaweedfs: Any) -> Any:
    return fscas_seaweedfs


@pytest.fixture(scope="session")
def fake_gcs(fscas_gcs: Any) -> Any:
    return fscas_gcs


@pytest.fixture(scope="session")
def azurite(fscas_azurite: Any) -> Any:
    return fscas_azurite


@pytest.fixture(scope="session")
def sftp_server(fscas_sftp: Any) -> Any:
    return fscas_sftp


@pytest.fixture(scope="session")
def webdav_server(fscas_webdav: Any) -> Any:
    return fscas_webdav


@pytest.fixture(scope="session")
def ftp_server(fscas_ftp: Any) -> Any:
    return fscas_ftp


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A `fscas.Store` on each backend, empty, with its own existence cache."""
    import fscas
    from fscas.existence import ExistenceCache

    url, options = store_url_for(request.param, request, tmp_path)
    s = fscas.open_store(url, existence_cache=ExistenceCache(tmp_path / "existence.db"), **options)
    yield s
    s.close()
