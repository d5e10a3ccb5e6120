"""pytest fixtures for fscas's emulators: one real server per session, failing (never skipping) if
it cannot start. Load with `pytest_plugins = ["fscas.conformance.plugin"]`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fscas.conformance.emulators import (
    AzuriteEmulator,
    Emulator,
    EmulatorError,
    FakeGcsEmulator,
    MotoEmulator,
    SeaweedFSEmulator,
)

__all__ = ["azurite", "fake_gcs", "moto_server", "seaweedfs", "unique_bucket"]


def _run(factory: type[Emulator]) -> Iterator[Emulator]:
    try:
        emulator = factory().start()
    except EmulatorError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Emulator]:
    """moto's S3 server on 127.0.0.1."""
    yield from _run(MotoEmulator)


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[Emulator]:
    """SeaweedFS (master, volume, filer, S3 gateway) on 127.0.0.1."""
    yield from _run(SeaweedFSEmulator)


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[Emulator]:
    """fake-gcs-server on 127.0.0.1."""
    yield from _run(FakeGcsEmulator)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Emulator]:
    """Azurite's blob service on 127.0.0.1."""
    yield from _run(AzuriteEmulator)


def unique_bucket(prefix: str = "fscas") -> str:
    """A fresh, valid bucket/container name (3-63 lowercase characters)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"
