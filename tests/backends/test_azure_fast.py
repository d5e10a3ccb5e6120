"""Azure's fast path (`azure_http`): which credentials take it, what steps aside, and that its bytes,
metadata and errors are the SDK path's, against Azurite."""

from __future__ import annotations

import asyncio
import datetime
import os
from pathlib import Path
from typing import Any

import pytest

import fscas
from fscas.backends.azure import AzureBackend, AzureOptions
from fscas.backends.azure_http import fast_path_of
from fscas.conformance.emulators import AZURITE_ACCOUNT, AZURITE_KEY
from fscas.conformance.plugin import unique_bucket
from fscas.errors import ObjectExists, ObjectNotFound
from fscas.manifests import snapshot
from fscas.runner import run_sync


def _container(azurite: Any, public: bool = False) -> str:
    from azure.storage.blob import BlobServiceClient

    name = unique_bucket()
    client = BlobServiceClient.from_connection_string(azurite.connection_string)
    client.create_container(name, public_access="container" if public else None)
    return name


def _sas(azurite: Any, container: str) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(AZURITE_ACCOUNT, container, account_key=AZURITE_KEY,
                                  permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True,
                                                                     create=True),
                                  expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))


def _options(azurite: Any, container: str, form: str) -> AzureOptions:
    endpoint = f"{azurite.endpoint}/{AZURITE_ACCOUNT}"
    if form == "connection string":
        return AzureOptions(connection_string=azurite.connection_string)
    if form == "account key":
        return AzureOptions(account_name=AZURITE_ACCOUNT, account_key=AZURITE_KEY, endpoint_url=endpoint)
    if form == "SAS token":
        return AzureOptions(account_name=AZURITE_ACCOUNT, sas_token=_sas(azurite, container), endpoint_url=endpoint)
    return AzureOptions(account_name=AZURITE_ACCOUNT, anon=True, endpoint_url=endpoint)


@pytest.mark.parametrize("form", ["connection string", "account key", "SAS token", "anonymous"])
def test_every_static_credential_takes_the_fast_path_and_round_trips(azurite: Any, form: str) -> None:
    container = _container(azurite, public=form == "anonymous")

    async def run() -> None:
        b = AzureBackend(container, "p", _options(azurite, container, form))
        try:
            if form == "anonymous":  # a public container reads without a credential; writing takes one
                writer = AzureBackend(container, "p", _options(azurite, container, "account key"))
                await writer.put("k/é x", b"payload", metadata={"asset-root": "/r"})
                await writer.aclose()
            else:
                await b.put("k/é x", b"payload", metadata={"asset-root": "/r"}, if_absent=True)
                with pytest.raises(ObjectExists):
                    await b.put("k/é x", b"other", if_absent=True)
            assert b._fast_client() is not None
            assert await b.get("k/é x") == b"payload"
            assert await b.get("k/é x", start=2, end=5) == b"ylo"
            info = await b.head("k/é x")
            assert (info.size, dict(info.metadata)) == (7, {"asset-root": "/r"})
            assert info.checksums.get("md5") == "321c3cf486ed509164edec1e1981fec8"  # md5(b"payload")
            with pytest.raises(ObjectNotFound):
                await b.head("absent")
        finally:
            await b.aclose()

    run_sync(run())


def test_a_token_credential_keeps_the_sdk_path() -> None:
    from azure.core.credentials import AccessToken, AzureSasCredential
    from azure.storage.blob.aio import BlobServiceClient

    class Token:
        async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("t", 2**31)

    url = "https://acct.blob.core.windows.net"
    assert fast_path_of(BlobServiceClient(url, credential=Token())) is None  # type: ignore[arg-type]
    assert fast_path_of(BlobServiceClient(url, credential=AzureSasCredential("sv=1&sig=2"))) is None
    found = fast_path_of(BlobServiceClient(url, credential={"account_name": "acct", "account_key": AZURITE_KEY}))
    assert found is not None and found[0].startswith(url)


def test_a_large_file_goes_as_one_put_blob_and_streams_back(azurite: Any, tmp_path: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    container = _container(azurite)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(40 * 2**20 + 7))  # above the 16 MiB block size
    m = snapshot(src, hash_cache=False)
    with fscas.open_store(f"az://{container}/root", existence_cache=False, **azurite.options()) as store:
        store.upload(m, src)
        store.download(m, dst)
    assert (dst / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(
        container, f"root/Data/{m.paths[0].hash}.xxh128")
    committed, uncommitted = blob.get_block_list("all")
    assert (committed, uncommitted) == ([], [])  # one Put Blob: no blocks staged and committed


def test_both_paths_carry_the_same_bytes(azurite: Any) -> None:
    container = _container(azurite)

    async def run(fast: bool) -> list[bytes]:
        b = AzureBackend(container, "", AzureOptions(connection_string=azurite.connection_string, fast_path=fast))
        try:
            await asyncio.gather(*(b.put(f"o{i}", bytes([i]) * (i * 100)) for i in range(40)))
            return list(await asyncio.gather(*(b.get(f"o{i}") for i in range(40))))
        finally:
            await b.aclose()

    assert run_sync(run(True)) == run_sync(run(False)) == [bytes([i]) * (i * 100) for i in range(40)]


@pytest.mark.parametrize("form", ["account key", "SAS token"])
def test_a_stream_past_one_part_is_staged_and_committed_on_the_fast_path(azurite: Any, form: str) -> None:
    container = _container(azurite)
    data = os.urandom(5 * 2**20 + 123)

    async def chunks() -> Any:
        for i in range(0, len(data), 2**20):
            yield data[i:i + 2**20]

    async def run() -> None:
        import attrs

        b = AzureBackend(container, "p", attrs.evolve(_options(azurite, container, form), part_size=2 * 2**20))
        try:
            b._blob = lambda key: None  # type: ignore[assignment,method-assign]  # any SDK call would fail
            await b.put("Data/x", chunks(), metadata={"asset-root": "/r"}, if_absent=True)
            assert b._http is not None
            assert await b.get("Data/x") == data
            assert dict((await b.head("Data/x")).metadata) == {"asset-root": "/r"}
            with pytest.raises(ObjectExists):  # the condition rides on the block-list commit
                await b.put("Data/x", chunks(), if_absent=True)
        finally:
            await b.aclose()

    run_sync(run())
