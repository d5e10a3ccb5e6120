"""fscas's pytest plugin (entry point `pytest11`): the `--store-url` option, and fixtures for the
emulators, one real server per session, failing (never skipping) if it cannot start.

Loaded by every pytest session of any project that installs fscas, so it adds only an option and
fixtures, all named `fscas_...` (a project's own `moto_server` or `ftp_server` stays its own), and
imports no SDK and no server until a fixture is used. The servers come with `fscas[emulators]`.
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
    FtpEmulator,
    MotoEmulator,
    SeaweedFSEmulator,
    SftpEmulator,
    WebdavEmulator,
)

__all__ = ["fscas_azurite", "fscas_ftp", "fscas_gcs", "fscas_moto", "fscas_seaweedfs", "fscas_sftp",
           "fscas_store_url", "fscas_webdav", "pytest_addoption", "pytest_generate_tests", "unique_bucket"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fscas")
    group.addoption("--store-url", action="append", default=[], metavar="URL",
                    help="run fscas's conformance suite (pytest --pyargs fscas.conformance) on this store URL")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fscas_store_url" in metafunc.fixturenames:
        urls = metafunc.config.getoption("--store-url") or ["memory://conformance", "file"]
        metafunc.parametrize("fscas_store_url", urls, indirect=True)


@pytest.fixture
def fscas_store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One `--store-url` value; `file` means a fresh temporary folder."""
    url: str = request.param
    return str(tmp_path_factory.mktemp("store")) if url == "file" else url


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
def fscas_moto() -> Iterator[Emulator]:
    """moto's S3 server on 127.0.0.1."""
    yield from _run(MotoEmulator)


@pytest.fixture(scope="session")
def fscas_seaweedfs() -> Iterator[Emulator]:
    """SeaweedFS (master, volume, filer, S3 gateway) on 127.0.0.1."""
    yield from _run(SeaweedFSEmulator)


@pytest.fixture(scope="session")
def fscas_gcs() -> Iterator[Emulator]:
    """fake-gcs-server on 127.0.0.1."""
    yield from _run(FakeGcsEmulator)


@pytest.fixture(scope="session")
def fscas_azurite() -> Iterator[Emulator]:
    """Azurite's blob service on 127.0.0.1."""
    yield from _run(AzuriteEmulator)


@pytest.fixture(scope="session")
def fscas_sftp() -> Iterator[Emulator]:
    """An SFTP server (asyncssh) on 127.0.0.1, password login, host key in `known_hosts`."""
    yield from _run(SftpEmulator)


@pytest.fixture(scope="session")
def fscas_webdav() -> Iterator[Emulator]:
    """A WebDAV server (wsgidav on cheroot) on 127.0.0.1 with basic authentication."""
    yield from _run(WebdavEmulator)


@pytest.fixture(scope="session")
def fscas_ftp() -> Iterator[Emulator]:
    """An FTP server (pyftpdlib) on 127.0.0.1 with a password login."""
    yield from _run(FtpEmulator)


def unique_bucket(prefix: str = "fscas") -> str:
    """A fresh, valid bucket/container name (3-63 lowercase characters)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"
