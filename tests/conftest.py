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


def _alias(name: str, plugin_fixture: str) -> Any:
    """A session fixture `name` that is the plugin's `plugin_fixture` (fscas.conformance.plugin)."""
    def alias(request: pytest.FixtureRequest) -> Any:
        return request.getfixturevalue(plugin_fixture)

    return pytest.fixture(scope="session", name=name)(alias)


# This project's own short names for the plugin's emulator fixtures.
moto_server = _alias("moto_server", "fscas_moto")
seaweedfs = _alias("seaweedfs", "fscas_seaweedfs")
fake_gcs = _alias("fake_gcs", "fscas_gcs")
azurite = _alias("azurite", "fscas_azurite")
sftp_server = _alias("sftp_server", "fscas_sftp")
webdav_server = _alias("webdav_server", "fscas_webdav")
ftp_server = _alias("ftp_server", "fscas_ftp")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A `fscas.Store` on each backend, empty, with its own existence cache."""
    import fscas
    from fscas.existence import ExistenceCache

    url, options = store_url_for(request.param, request, tmp_path)
    s = fscas.open_store(url, existence_cache=ExistenceCache(tmp_path / "existence.db"), **options)
    yield s
    s.close()
