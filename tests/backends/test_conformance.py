"""The conformance suite on every backend fscas ships, against real emulators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fscas.conformance.plugin import unique_bucket
from fscas.conformance.testing import BackendSuite


def _bucket(emulator: Any) -> tuple[str, dict[str, Any]]:
    bucket = unique_bucket()
    emulator.create_bucket(bucket)
    return emulator.store_url(bucket, "shared/prefix"), emulator.options()


class TestFile(BackendSuite):
    @pytest.fixture
    def store_target(self, tmp_path: Path) -> tuple[str, dict[str, Any]]:
        return str(tmp_path / "store"), {}


class TestMemory(BackendSuite):
    @pytest.fixture
    def store_target(self) -> tuple[str, dict[str, Any]]:
        return "memory://conformance", {}


class TestMoto(BackendSuite):
    @pytest.fixture
    def store_target(self, moto_server: Any) -> tuple[str, dict[str, Any]]:
        return _bucket(moto_server)


class TestSeaweedFS(BackendSuite):
    @pytest.fixture
    def store_target(self, seaweedfs: Any) -> tuple[str, dict[str, Any]]:
        return _bucket(seaweedfs)


class TestFakeGcs(BackendSuite):
    @pytest.fixture
    def store_target(self, fake_gcs: Any) -> tuple[str, dict[str, Any]]:
        return _bucket(fake_gcs)


class TestAzurite(BackendSuite):
    @pytest.fixture
    def store_target(self, azurite: Any) -> tuple[str, dict[str, Any]]:
        return _bucket(azurite)


class TestAzuriteSdkPath(BackendSuite):
    """Every check again with the fast path off: the SDK path (token credentials, proxies) stays whole."""

    @pytest.fixture
    def store_target(self, azurite: Any) -> tuple[str, dict[str, Any]]:
        url, options = _bucket(azurite)
        return url, {**options, "fast_path": False}


class TestFakeGcsSdkPath(BackendSuite):
    """Every check again with the fast path off: gcsfs carries every request."""

    @pytest.fixture
    def store_target(self, fake_gcs: Any) -> tuple[str, dict[str, Any]]:
        url, options = _bucket(fake_gcs)
        return url, {**options, "fast_path": False}


class TestMotoSdkPath(BackendSuite):
    """Every check again with the fast path off: s3fs/botocore carries every request."""

    @pytest.fixture
    def store_target(self, moto_server: Any) -> tuple[str, dict[str, Any]]:
        url, options = _bucket(moto_server)
        return url, {**options, "fast_path": False}
