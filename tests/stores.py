"""Fresh stores on every backend the tests run against (a module of its own: two conftest modules exist)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
