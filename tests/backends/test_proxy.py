"""Through a real proxy on 127.0.0.1: plain HTTP forwarded in absolute form, HTTPS tunnelled with
CONNECT. Every cloud's push and pull pass through it whole (the fast path steps aside where a proxy
applies, and each SDK speaks to the proxy), and a TLS endpoint is reached through a CONNECT tunnel
with its certificate still checked end to end."""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from test_tls import _CA_VARIABLES, _store, tls_endpoint  # noqa: F401 - the fixture, shared

import fscas
from fscas.errors import ObjectNotFound, Unreachable
from fscas.manifests import snapshot
from fscas.runner import run_sync

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class _ProxyHandler(socketserver.StreamRequestHandler):
    """One client connection: CONNECT opens a tunnel; an absolute-form request is sent on in origin
    form with `Connection: close`, its answer piped back, and the connection closed after it."""

    rbufsize = 0  # unbuffered: nothing the client sent is left in a buffer when the tunnel opens

    def handle(self) -> None:
        request_line = self.rfile.readline().decode("latin-1")
        if not request_line.strip():
            return
        method, target, version = request_line.split()
        headers = []
        while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
            headers.append(line)
        self.server.seen.append((method, target))  # type: ignore[attr-defined]
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _pipe_both(self.connection, upstream)
            return
        parts = urlsplit(target)
        assert parts.scheme == "http" and parts.hostname, f"not absolute form: {request_line!r}"
        length, expect, kept = 0, False, []
        for line in headers:
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name in ("connection", "proxy-connection", "keep-alive", "expect"):
                expect = expect or (name == "expect" and "100-continue" in value.lower())
                continue
            if name == "content-length":
                length = int(value)
            assert name != "transfer-encoding", "a chunked request body: not handled here"
            kept.append(line)
        if expect:  # botocore waits for it before sending a PUT's body
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = b""
        while len(body) < length:
            body += self.rfile.read(length - len(body)) or b""
        upstream = socket.create_connection((parts.hostname, parts.port or 80))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        upstream.sendall(f"{method} {path or '/'} {version}\r\n".encode("latin-1") + b"".join(kept)
                         + b"Connection: close\r\n\r\n" + body)
        with upstream:
            while chunk := upstream.recv(1 << 16):
                self.connection.sendall(chunk)


def _pipe_both(client: socket.socket, upstream: socket.socket) -> None:
    """Shuffle bytes both ways until either side closes."""

    def one_way(src: socket.socket, dst: socket.socket) -> None:
        try:
            with contextlib.suppress(OSError):
                while chunk := src.recv(1 << 16):
                    dst.sendall(chunk)
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    back = threading.Thread(target=one_way, args=(upstream, client), daemon=True)
    back.start()
    one_way(client, upstream)
    back.join(10)
    upstream.close()


class _Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[tuple[str, str]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def proxy(monkeypatch: Any) -> Iterator[_Proxy]:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    server = _Proxy()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("cloud", ["s3", "az", "gs"])
def test_a_push_and_a_pull_pass_whole_through_a_proxy(cloud: str, proxy: _Proxy, request: Any, tmp_path: Path,
                                                      monkeypatch: Any) -> None:
    from fscas.conformance.plugin import unique_bucket

    emulator = request.getfixturevalue({"s3": "moto_server", "az": "azurite", "gs": "fake_gcs"}[cloud])
    bucket = unique_bucket()
    emulator.create_bucket(bucket)
    src = tmp_path / "src"
    files = {f"f{i}.bin": os.urandom(1000 * i + 1) for i in range(6)} | {"big.bin": os.urandom(17 * 2**20 + 3)}
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with fscas.open_store(emulator.store_url(bucket), existence_cache=False, **emulator.options()) as store:
        key, _, _ = store.push(snapshot(src, hash_cache=False), src, farm_id="f", queue_id="q")
        store.download(store.get_manifest(key), tmp_path / "dst")
    assert {p.name: p.read_bytes() for p in (tmp_path / "dst").iterdir()} == files
    assert proxy.seen, "nothing went through the proxy"
    # every request went to the emulator, through the proxy, in absolute form: the data PUTs and GETs too
    assert all(method != "CONNECT" and urlsplit(target).port == emulator.port for method, target in proxy.seen)
    assert sum(method in ("PUT", "POST") for method, _ in proxy.seen) >= len(files)
    assert sum(method == "GET" for method, _ in proxy.seen) >= len(files)


@pytest.mark.parametrize("cloud", ["s3", "az", "gs"])
def test_https_goes_through_a_connect_tunnel_with_the_certificate_checked(cloud: str, proxy: _Proxy, request: Any,
                                                                         monkeypatch: Any) -> None:
    endpoint, cert = request.getfixturevalue("tls_endpoint")  # test_tls's self-signed server
    for name in _CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    url, options = _store(cloud, endpoint)
    with fscas.open_store(url, existence_cache=False, **options) as store, pytest.raises(Unreachable) as refused:
        run_sync(store.aio.backend.head("Data/x"))  # the tunnel reaches the server; its certificate is not trusted
    assert "certificate" in str(refused.value).lower(), refused.value
    monkeypatch.setenv("AWS_CA_BUNDLE" if cloud == "s3" else "REQUESTS_CA_BUNDLE", str(cert))
    with fscas.open_store(url, existence_cache=False, **options) as store, pytest.raises(ObjectNotFound):
        run_sync(store.aio.backend.head("Data/x"))  # the server's 404, through the tunnel
    port = urlsplit(endpoint).port
    assert proxy.seen and all(seen == ("CONNECT", f"127.0.0.1:{port}") for seen in proxy.seen), proxy.seen


def test_a_ca_bundle_on_the_azure_sdk_path_is_loaded_once_not_per_request(azurite: Any, monkeypatch: Any,
                                                                           tmp_path: Path) -> None:
    """azure-core turns `connection_verify=PATH` into a new SSL context per request (23 ms each: a
    small PUT took 13x as long); the SDK path trusts the bundle through one context on its session."""
    import ssl

    import certifi

    from fscas.backends import open_backend
    from fscas.conformance.plugin import unique_bucket

    bucket = unique_bucket()
    azurite.create_bucket(bucket)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    made = []
    real = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(kwargs.get("cafile"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counted)

    async def puts() -> None:
        backend = open_backend(azurite.store_url(bucket), fast_path=False, **azurite.options())
        try:
            for i in range(20):
                await backend.put(f"k{i}", b"x")
            assert await backend.get("k19") == b"x"
        finally:
            await backend.aclose()

    run_sync(puts())
    assert made.count(certifi.where()) == 1, made
