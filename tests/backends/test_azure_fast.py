"""Azure's fast path (`azure_http`, `azure_auth`): which credentials take it, what steps aside, how
it is signed without loading the SDK, and that its bytes, metadata and errors are the SDK path's,
against Azurite."""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fscas
from fscas.backends.azure import AzureBackend, AzureOptions
from fscas.backends.azure_auth import BlobSas, SharedKey, service_url
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
            if form in ("connection string", "account key"):  # `é x` went to the shared key by rule, not by a 403
                assert b._http is not None and b._http._sas is not None
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


def test_a_small_transfer_with_a_key_never_loads_the_sdk(azurite: Any) -> None:
    """A key reaches the fast path without azure-storage-blob or azure-core (0.3 s of a command's
    start-up): obstore's per-blob SAS authorizes the first `SharedKey.AFTER` requests."""
    container = _container(azurite)
    code = f"""
import sys
from fscas.backends.azure import AzureBackend, AzureOptions
from fscas.backends.azure_auth import BlobSas, SharedKey, service_url
from fscas.runner import run_sync

async def run():
    b = AzureBackend({container!r}, "p", AzureOptions(connection_string={azurite.connection_string!r}))
    try:
        await b.put("Data/a.xxh128", b"payload", metadata={{"asset-root": "/r"}}, if_absent=True)
        assert await b.get("Data/a.xxh128") == b"payload"
        assert dict((await b.head("Data/a.xxh128")).metadata) == {{"asset-root": "/r"}}
        async with b.stream("Data/a.xxh128", start=3) as chunks:
            assert b"".join([c async for c in chunks]) == b"load"
        await b.delete("Data/a.xxh128")
    finally:
        await b.aclose()

run_sync(run())
print(sorted(m for m in sys.modules if m.startswith("azure")))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_a_bulk_transfer_loads_the_shared_key_behind_it_and_signs_the_rest_with_it(azurite: Any,
                                                                                   monkeypatch: Any) -> None:
    container = _container(azurite)
    asked: list[str] = []
    query = BlobSas.query

    def counted(self: BlobSas, method: str, path: str, blob: str) -> str | None:
        asked.append(blob)
        return query(self, method, path, blob)

    monkeypatch.setattr(BlobSas, "query", counted)

    async def run() -> None:
        b = AzureBackend(container, "", AzureOptions(connection_string=azurite.connection_string))
        try:
            await asyncio.gather(*(b.put(f"o{i}", b"x" * i) for i in range(SharedKey.AFTER + 10)))
            assert b._http is not None and b._http._key is not None
            b._http._key.close()  # the load on its thread has ended
            sas = len(asked)
            assert SharedKey.AFTER - 1 <= sas < SharedKey.AFTER + 10  # the load may end before the last
            assert [await b.get(f"o{i}") for i in range(20)] == [b"x" * i for i in range(20)]
            assert len(asked) == sas  # signed with the shared key from then on
        finally:
            await b.aclose()

    run_sync(run())


def test_obstore_signs_only_names_it_encodes_as_the_service_reads_them(azurite: Any) -> None:
    """object_store signs a blob's percent-encoded name, which the service refuses: such a name is
    left to the shared key (`k/é x` in the round trip above takes that way)."""
    container = _container(azurite)
    base = f"{azurite.endpoint}/{AZURITE_ACCOUNT}"
    sas = BlobSas.make(AZURITE_ACCOUNT, AZURITE_KEY, base, container)
    assert sas is not None
    prefix = f"/{AZURITE_ACCOUNT}/{container}/"
    signed = sas.query("HEAD", prefix + "Data/0123.xxh128", "Data/0123.xxh128")
    assert signed is not None and "sig=" in signed and "sp=r" in signed  # HEAD is read permission
    assert sas.query("GET", prefix + "k/%C3%A9%20x", "k/é x") is None
    assert sas.query("GET", prefix + "a//b", "a//b") is None  # a name object_store's paths refuse


def test_without_obstore_the_shared_key_signs_every_request(azurite: Any, monkeypatch: Any) -> None:
    container = _container(azurite)
    monkeypatch.setitem(sys.modules, "obstore.store", None)  # `from obstore.store import ...` fails

    async def run() -> None:
        b = AzureBackend(container, "", AzureOptions(connection_string=azurite.connection_string))
        try:
            await b.put("o", b"payload", if_absent=True)
            assert await b.get("o") == b"payload"
            assert b._http is not None and b._http._sas is None and b._http._key is not None
        finally:
            await b.aclose()

    run_sync(run())


def test_a_refused_sas_falls_back_to_the_shared_key_for_good(azurite: Any, monkeypatch: Any) -> None:
    """A SAS's start time gets no leeway for a client clock ahead of the service's: a 403 to a SAS
    is sent again with the shared key, which signs every request after it."""
    container = _container(azurite)
    query = BlobSas.query

    def forged(self: BlobSas, method: str, path: str, blob: str) -> str | None:
        signed = query(self, method, path, blob)
        return None if signed is None else signed.split("&sig=")[0] + "&sig=AAAA"

    monkeypatch.setattr(BlobSas, "query", forged)

    async def run() -> None:
        b = AzureBackend(container, "", AzureOptions(connection_string=azurite.connection_string))
        try:
            await asyncio.gather(*(b.put(f"o{i}", bytes([i])) for i in range(8)))
            assert b._http is not None and b._http._sas is None
            assert await b.get("o3") == bytes([3])
            async with b.stream("o5") as chunks:
                assert b"".join([c async for c in chunks]) == bytes([5])
        finally:
            await b.aclose()

    run_sync(run())


@pytest.mark.parametrize("cs", [
    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key};EndpointSuffix=core.windows.net",
    "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={key};EndpointSuffix=core.chinacloudapi.cn;",
    "AccountName=acct;AccountKey={key}",
    "accountname=acct;accountkey={key};blobendpoint=http://127.0.0.1:10000/acct",
    "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={key}",
])
def test_a_connection_strings_service_url_is_the_sdks(cs: str) -> None:
    from azure.storage.blob import BlobServiceClient

    cs = cs.format(key=AZURITE_KEY)
    assert service_url(cs) is not None
    assert service_url(cs).rstrip("/") == BlobServiceClient.from_connection_string(cs).url.rstrip("/")


@pytest.mark.parametrize("cs", ["UseDevelopmentStorage=true", "AccountName=acct;SharedAccessSignature=sv=1&sig=2",
                                "AccountName=acct;AccountKey", "BlobEndpoint=http://h/acct"])
def test_connection_strings_only_the_sdk_reads_are_left_to_it(cs: str) -> None:
    assert service_url(cs) is None
