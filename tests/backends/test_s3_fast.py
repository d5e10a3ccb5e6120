"""The S3 fast path's own requests against real servers: a large file as one streamed PUT, read once
where the server does not check a signed body hash and twice where it does, the file refused when it
changes before it is sent, listings, and a command that never loads botocore's HTTP stack (s3fs,
aiohttp) when the fast path carries everything."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash

import fscas
from fscas.backends import open_backend
from fscas.backends.base import FileBody
from fscas.conformance.faults import FaultProxy
from fscas.conformance.plugin import unique_bucket
from fscas.transfer import _verified_chunks, send_file

SERVERS = ["moto_server", "seaweedfs"]


def _backend(emulator: Any, **options: Any) -> Any:
    bucket = unique_bucket()
    emulator.create_bucket(bucket)
    return open_backend(emulator.store_url(bucket, "root"), **{**emulator.options(), **options})


def _big_file(path: Path, size: int = 17 * 2**20 + 5) -> tuple[str, bytes]:
    data = os.urandom(size)
    path.write_bytes(data)
    return xxhash.xxh3_128_hexdigest(data), data


@pytest.mark.parametrize("server", SERVERS)
def test_a_large_file_is_one_put_below_the_cutoff_and_multipart_above(server: str, tmp_path: Path,
                                                                      request: pytest.FixtureRequest) -> None:
    emulator = request.getfixturevalue(server)
    digest, data = _big_file(tmp_path / "big.bin")

    async def upload(**options: Any) -> tuple[Any, list[int]]:
        backend = _backend(emulator, **options)
        seen: list[int] = []
        try:
            await send_file(backend, tmp_path / "big.bin", str(tmp_path), digest, len(data), seen.append)
            info = await backend.head(f"Data/{digest}.xxh128")
            assert await backend.get(f"Data/{digest}.xxh128") == data
        finally:
            await backend.aclose()
        return info, seen

    one, seen = asyncio.run(upload())
    assert one.size == len(data) and one.checksums.get("md5") == hashlib.md5(data).hexdigest()  # no "-N": one PUT
    assert sum(seen) == len(data)  # the hashing pass does not count as progress
    parts, seen = asyncio.run(upload(upload_cutoff=0))
    assert parts.size == len(data) and (parts.etag or "").strip('"').endswith("-3")  # 8 MiB parts
    assert sum(seen) == len(data)


@contextlib.contextmanager
def _counted_body(path: Path, digest: str, size: int, readings: list[bool]) -> Iterator[FileBody]:
    """A FileBody of the file at `path` that records each reading (True: the counted, sending one)."""
    with open(path, "rb", buffering=0) as f:
        def chunks(counted: bool) -> Any:
            readings.append(counted)
            return _verified_chunks(f, path, digest, size, lambda _: None)
        yield FileBody(size, chunks)


@pytest.mark.parametrize("server", SERVERS)
def test_a_server_that_ignores_the_signed_body_hash_gets_the_file_read_once(server: str, tmp_path: Path,
                                                                           request: pytest.FixtureRequest) -> None:
    # moto and SeaweedFS take a body whatever SHA-256 its signature carries: hashing a large file for
    # the signature would be a whole extra reading that protects nothing. One probe finds that out.
    emulator = request.getfixturevalue(server)
    digest, data = _big_file(tmp_path / "big.bin")

    async def go() -> None:
        backend = _backend(emulator)
        readings: list[bool] = []
        try:
            for _ in range(2):
                with _counted_body(tmp_path / "big.bin", digest, len(data), readings) as body:
                    await backend.put(f"Data/{digest}.xxh128", body)
            assert readings == [True, True], "one sending reading per upload, no hashing pass"
            assert await backend.get(f"Data/{digest}.xxh128") == data
            assert [o.key async for o in backend.list("")] == [f"Data/{digest}.xxh128"], "the probe left nothing"
        finally:
            await backend.aclose()

    asyncio.run(go())


def test_a_server_that_checks_the_signed_body_hash_gets_it_and_is_probed_once(moto_server: Any,
                                                                               tmp_path: Path) -> None:
    # In front of moto, a proxy refuses a body that does not match its signed SHA-256, as AWS and
    # MinIO do: the probe is refused, so each large file is hashed for its signature, then sent.
    digest, data = _big_file(tmp_path / "big.bin")
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)

    async def go(url: str) -> list[bool]:
        backend = open_backend(f"s3://{bucket}/root?endpoint_url={url}", **moto_server.options())
        readings: list[bool] = []
        try:
            for _ in range(2):
                with _counted_body(tmp_path / "big.bin", digest, len(data), readings) as body:
                    await backend.put(f"Data/{digest}.xxh128", body)
            assert await backend.get(f"Data/{digest}.xxh128") == data
            assert [o.key async for o in backend.list("")] == [f"Data/{digest}.xxh128"]
        finally:
            await backend.aclose()
        return readings

    with FaultProxy(moto_server.endpoint, rate=0, check_payload=True) as proxy:
        readings = asyncio.run(go(proxy.url))
        probes = [h for h in proxy.heads if h.startswith(b"PUT /" + bucket.encode() + b"/root/fscas-probe ")]
    assert readings == [False, True, False, True], "a hashing reading, then the sending one, per upload"
    assert proxy.mismatched == 1 and len(probes) == 1, "only the probe was refused, and only once"
    assert not any(b"UNSIGNED-PAYLOAD" in h for h in proxy.heads)


@pytest.mark.parametrize("server", SERVERS)
def test_a_file_changed_after_its_hashing_pass_is_refused_and_never_stored(server: str, tmp_path: Path,
                                                                            request: pytest.FixtureRequest) -> None:
    # SeaweedFS does not check a signed payload's SHA-256 against the body: what keeps the wrong bytes
    # out is the sending pass's own hash, with the last chunk held back until it checks out.
    emulator = request.getfixturevalue(server)
    path = tmp_path / "big.bin"
    digest, data = _big_file(path)

    async def go() -> None:
        backend = _backend(emulator)
        try:
            with open(path, "rb", buffering=0) as f:
                def chunks(counted: bool) -> Any:
                    if counted:  # after the hashing pass, before the sending one: same size, other bytes
                        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
                    return _verified_chunks(f, path, digest, len(data), lambda _: None)

                with pytest.raises(fscas.IntegrityError, match="changed since its snapshot"):
                    await backend.put(f"Data/{digest}.xxh128", FileBody(len(data), chunks))
            with pytest.raises(fscas.ObjectNotFound):
                await backend.head(f"Data/{digest}.xxh128")
            assert [o.key async for o in backend.list("")] == []
        finally:
            await backend.aclose()

    asyncio.run(go())


def test_a_listing_the_fast_path_cannot_read_is_a_clean_store_error(tmp_path: Path) -> None:
    answers = [b"<ListBucketResult><Contents><Key>a", b"<ListBucketResult><IsTruncated>true</IsTruncated>"
               b"</ListBucketResult>"]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while answers:
            await reader.readuntil(b"\r\n\r\n")
            body = answers.pop(0)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    async def go() -> None:
        server = await asyncio.start_server(script, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        backend = open_backend(f"s3://bkt/p?endpoint_url=http://127.0.0.1:{port}", key="k", secret="s")
        try:
            for expected in ("malformed listing", "a truncated listing without a continuation token"):
                with pytest.raises(fscas.StoreError, match=f"s3://bkt/p.*: {expected}"):
                    _ = [o async for o in backend.list("")]
        finally:
            await backend.aclose()
            server.close()

    asyncio.run(go())


def test_a_fast_path_push_and_pull_never_load_s3fs_or_aiohttp(seaweedfs: Any, tmp_path: Path) -> None:
    # Importing s3fs/aiobotocore/aiohttp costs 0.3-0.7 s: for a push of a few files, most of its time.
    bucket = unique_bucket()
    seaweedfs.create_bucket(bucket)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_bytes(b"hello")
    (tmp_path / "src" / "big.bin").write_bytes(os.urandom(17 * 2**20))
    script = f"""
import sys, fscas
from fscas.manifests import snapshot
with fscas.open_store({seaweedfs.store_url(bucket, "r")!r}, key={seaweedfs.access_key!r},
                      secret={seaweedfs.secret_key!r}) as s:
    m = snapshot({str(tmp_path / "src")!r}, hash_cache=False)
    s.upload(m, {str(tmp_path / "src")!r})
    s.download(m, {str(tmp_path / "dst")!r})
    print(sorted(x for x in ("s3fs", "aiobotocore", "aiohttp") if x in sys.modules))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "dst" / "big.bin").read_bytes() == (tmp_path / "src" / "big.bin").read_bytes()


def test_over_tls_a_body_hash_is_never_signed_and_nothing_is_probed() -> None:
    # TLS protects the body in transit (the AWS SDKs' own rule for streamed uploads): no probe, no
    # hashing pass. Nothing listens on this port, so a probe would fail with a connection error.
    from fscas.backends.s3_http import S3Http

    async def go() -> None:
        async def credentials() -> tuple[str, str, None]:
            return "k", "s", None
        http = S3Http("https://127.0.0.1:9", "bkt", "us-east-1", credentials)
        try:
            assert await http.payload_hash_checked("root/fscas-probe") is False
        finally:
            await http.close()

    asyncio.run(go())


def test_both_paths_sign_for_the_region_and_trust_store_of_the_shared_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fscas.backends.s3 import S3Backend, S3Options

    (tmp_path / "config").write_text("[profile render]\nregion = eu-west-3\nca_bundle = /etc/ssl/farm.pem\n"
                                     "max_attempts = 7\n")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE", "AWS_MAX_ATTEMPTS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    backend = S3Backend("b", "", S3Options(endpoint_url="http://127.0.0.1:9", profile="render", key="k", secret="s"))
    assert backend._aws_config == ("eu-west-3", "/etc/ssl/farm.pem", 7)

    async def regions() -> tuple[str, str]:
        fs = await backend._connect()  # botocore's path
        http = await backend._fast_client()
        assert http is not None
        region = fs.s3.meta.region_name if getattr(fs, "_s3", None) else fs.client_kwargs["region_name"]
        await backend.aclose()
        return region, http.region

    assert asyncio.run(regions()) == ("eu-west-3", "eu-west-3")
    plain = S3Backend("b", "", S3Options(endpoint_url="http://127.0.0.1:9", key="k", secret="s"))
    assert plain._aws_config[0] == "us-east-1"  # a custom endpoint with no region anywhere


@pytest.mark.parametrize(("config", "options"), [
    ("s3 =\n    addressing_style = virtual\n", {}),
    ("s3 =\n    payload_signing_enabled = true\n", {}),
    ("s3 =\n    use_accelerate_endpoint = true\n", {}),
    ("use_fips_endpoint = true\n", {}),
    ("sigv4a_signing_region_set = *\n", {}),
    ("", {"addressing_style": "virtual"}),
])
def test_the_fast_path_steps_aside_for_settings_only_botocore_honours(
        config: str, options: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile asking for what the fast path cannot do (virtual hosts, a signed body over TLS, an
    accelerate or FIPS endpoint, SigV4a) sends every request through botocore, which honours it;
    settings that do not change a request (max_attempts, the s3 section's max_concurrent_requests)
    keep the fast path."""
    from fscas.backends.s3 import S3Backend, S3Options

    (tmp_path / "config").write_text(f"[default]\nregion = us-east-1\n{config}")
    (tmp_path / "harmless").write_text("[default]\nmax_attempts = 3\ns3 =\n    max_concurrent_requests = 20\n")
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    def fast(config_file: Path, **kwargs: str) -> bool:
        monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
        backend = S3Backend("b", "", S3Options(endpoint_url="http://127.0.0.1:9", key="k", secret="s", **kwargs))
        try:
            return asyncio.run(backend._fast_client()) is not None
        finally:
            asyncio.run(backend.aclose())

    assert fast(tmp_path / "harmless")
    assert not fast(tmp_path / "config", **options)
