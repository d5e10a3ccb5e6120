"""Backend options, metadata mapping and error translation, checked against real servers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fscas
from fscas import errors
from fscas.backends import open_backend, parse_url
from fscas.backends.azure import name_from_wire, name_to_wire
from fscas.conformance.emulators import free_port
from fscas.conformance.plugin import unique_bucket


def test_url_options_and_typos() -> None:
    loc = parse_url("s3://bkt/a/b?endpoint_url=http://127.0.0.1:9000&region=eu-west-1")
    assert (loc.scheme, loc.bucket, loc.prefix) == ("s3", "bkt", "a/b")
    assert loc.options == {"endpoint_url": "http://127.0.0.1:9000", "region": "eu-west-1"}
    loc = parse_url("s3://bkt/key,opt=endpoint=http://x,opt=region=us-east-1")
    assert loc.options == {"endpoint": "http://x", "region": "us-east-1"} and loc.prefix == "key"
    assert parse_url("abfs://cont@acct.dfs.core.windows.net/p").options == {"account_name": "acct"}
    with pytest.raises(fscas.ConfigError, match="did you mean 'endpoint_url'"):
        open_backend("s3://bkt?endpont_url=http://x")
    with pytest.raises(fscas.ConfigError, match="unknown scheme"):
        open_backend("nosuchproto://host/x")
    with pytest.raises(fscas.ConfigError, match="must be true or false"):
        open_backend("s3://bkt?anon=perhaps")


def test_secrets_stay_out_of_repr_and_url() -> None:
    b = open_backend("s3://bkt/p", key="AKIASECRETKEYID", secret="verysecretvalue", endpoint_url="http://127.0.0.1:1")
    assert "verysecret" not in repr(b) and "verysecret" not in b.url and "AKIASECRET" not in repr(b.options)
    assert "verysecret" not in repr(b.options)  # type: ignore[attr-defined]


def test_metadata_names_outside_the_grammar_are_refused() -> None:
    b = open_backend("memory://m")
    for bad in ({"Asset-Root": "x"}, {"asset_root": "x"}, {"asset-root": "scène"}):
        with pytest.raises(fscas.ConfigError):
            asyncio.run(b.put("k", b"", metadata=bad))


def test_azure_name_mapping_round_trips() -> None:
    for name in ("asset-root", "asset-root-json", "file-system-location-name", "a", "x9-y"):
        wire = name_to_wire(name)
        assert wire.isidentifier() and name_from_wire(wire) == name


def test_azure_writes_identifier_names_on_the_wire(azurite: Any) -> None:
    from azure.storage.blob import BlobServiceClient

    bucket = unique_bucket()
    azurite.create_bucket(bucket)
    b = open_backend(azurite.store_url(bucket), **azurite.options())

    async def go() -> dict[str, str]:
        await b.put("m", b"x", metadata={"asset-root": "/r", "file-system-location-name": "L"})
        info = await b.head("m")
        await b.aclose()
        return dict(info.metadata)

    assert asyncio.run(go()) == {"asset-root": "/r", "file-system-location-name": "L"}
    raw = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(bucket, "m")
    assert raw.get_blob_properties().metadata == {"asset_root": "/r", "file_system_location_name": "L"}


@pytest.mark.parametrize("url", ["s3://bkt?endpoint_url=http://127.0.0.1:{port}&key=a&secret=b",
                                 "gs://bkt?endpoint_url=http://127.0.0.1:{port}&token=anon"])
def test_unreachable_endpoint_is_one_clear_error(url: str) -> None:
    b = open_backend(url.format(port=free_port()))

    async def go() -> None:
        try:
            await b.head("Data/x")
        finally:
            await b.aclose()

    with pytest.raises(errors.Unreachable, match="unreachable"):
        asyncio.run(go())


def test_missing_bucket_is_a_clean_refusal(seaweedfs: Any) -> None:
    # SeaweedFS answers AccessDenied for a PUT into a missing bucket, moto NoSuchBucket: either
    # way one fscas error, never a botocore one.
    b = open_backend(seaweedfs.store_url(unique_bucket()), **seaweedfs.options())

    async def go() -> None:
        try:
            await b.put("k", b"1")
        finally:
            await b.aclose()

    with pytest.raises((errors.AccessDenied, fscas.ObjectNotFound)):
        asyncio.run(go())


@pytest.mark.parametrize("target, meant", [("s3:/bucket/p", "s3://bucket/p"), ("s3//bucket/p", "s3://bucket/p"),
                                           ("s3:bucket/p", "s3://bucket/p"), ("gs:/b", "gs://b"),
                                           ("sftp//host/x", "sftp://host/x")])
def test_a_mistyped_url_is_not_a_folder(target: str, meant: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(fscas.ConfigError, match=f"did you mean {meant}"):
        open_backend(target)
    with pytest.raises(fscas.ConfigError, match="takes no \\?options"):
        open_backend("sss?creat=1")
    assert os.listdir(tmp_path) == []  # no folder was made for any of them


def test_wrong_types_say_what_is_accepted() -> None:
    for target in (42, None, b"s3://b"):
        with pytest.raises(fscas.ConfigError, match="URL or a folder path"):
            fscas.open_store(target)  # type: ignore[arg-type]


def test_option_typos_name_the_store_keywords_too() -> None:
    with pytest.raises(fscas.ConfigError, match="memory://: unknown keyword option 'concurency'; did you mean "
                                                "'concurrency'"):
        fscas.open_store("memory://", concurency=4)


def test_reading_a_missing_folder_store_creates_nothing(tmp_path: Path) -> None:
    with fscas.open_store(str(tmp_path / "nope")) as store, pytest.raises(errors.BucketNotFound):
        store.get_manifest("Manifests/x")
    assert not (tmp_path / "nope").exists()
    with fscas.open_store(str(tmp_path / "nope")) as store:
        store.put_bytes(b"x")
        assert store.aio.backend.created  # type: ignore[attr-defined]


def test_built_in_schemes_open_without_reading_every_distributions_metadata(tmp_path: Path) -> None:
    from importlib.metadata import distribution

    from fscas import backends

    registered = {ep.name: ep.value for ep in distribution("fscas").entry_points if ep.group == backends.GROUP}
    assert registered == backends._BUILTIN  # the shortcut's table is pyproject.toml's, entry for entry
    urls = ["memory://x", str(tmp_path / "store"), "s3://b/p?endpoint_url=http://127.0.0.1:9",
            "gs://b/p?endpoint_url=http://127.0.0.1:9&token=anon", "az://c/p?account_name=a&anon=true"]
    code = ("import sys, fscas.backends as b\nopened = [type(b.open_backend(u)).__name__ for u in sys.argv[1:]]\n"
            "print(*opened, 'importlib.metadata' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, *urls], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["MemoryBackend", "FileBackend", "S3Backend", "GCSBackend", "AzureBackend",
                                "False"], r.stderr


def test_a_scheme_given_to_another_distribution_goes_through_the_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    from fscas import backends
    from fscas.backends.memory import MemoryBackend

    assert backends._builtin("memory") == MemoryBackend.from_location
    monkeypatch.setenv("FSCAS_BACKEND_MEMORY", "fscas-shadow")
    assert backends._builtin("memory") is None
    assert isinstance(open_backend("memory://x"), MemoryBackend)  # fscas-shadow is not installed here
    assert backends._builtin("sftp") is None  # not fscas's: the generic backend's, by the entry points
