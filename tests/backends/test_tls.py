"""Proxies, certificates and redirects on every path: a proxy for the endpoint sends every request
through the SDK, which uses it; a self-signed HTTPS endpoint is refused, and reached once its CA is
given; no credential follows a redirect to another host, on the fast path or the SDK's."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fscas
from fscas.errors import FscasError, ObjectNotFound, Unreachable
from fscas.runner import run_sync

_CA_VARIABLES = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fscas test endpoint")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _NotFound(http.server.BaseHTTPRequestHandler):
    """Every request: 404, in each cloud's words (S3's XML code, Azure's header, GCS's JSON)."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        body = b'{"error": {"code": 404, "message": "No such object"}}'
        if "x-ms-version" in self.headers:
            body = b""
        elif "x-amz-date" in self.headers:
            body = b"<Error><Code>NoSuchKey</Code></Error>"
        self.send_response(404)
        self.send_header("x-ms-error-code", "BlobNotFound")
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


class _Recording(http.server.BaseHTTPRequestHandler):
    """Answers 404 to everything, keeping each request's headers in `server.seen`."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        self.server.seen.append((self.command, dict(self.headers)))  # type: ignore[attr-defined]
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


def _redirecting_to(elsewhere: str, status: int) -> type[http.server.BaseHTTPRequestHandler]:
    class Redirecting(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            if length := int(self.headers.get("Content-Length") or 0):
                self.rfile.read(length)
            self.send_response(status)
            self.send_header("Location", elsewhere + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass
    return Redirecting


def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def tls_endpoint(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = _self_signed(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def _store(cloud: str, endpoint: str) -> tuple[str, dict[str, Any]]:
    if cloud == "s3":
        return f"s3://bucket/p?endpoint_url={endpoint}", {"key": "k", "secret": "s", "region": "us-east-1"}
    if cloud == "az":
        from fscas.conformance.emulators import AZURITE_ACCOUNT, AZURITE_KEY

        return (f"az://container/p?endpoint_url={endpoint}/{AZURITE_ACCOUNT}",
                {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})
    return f"gs://bucket/p?endpoint_url={endpoint}&token=anon", {}


@pytest.mark.parametrize("cloud", ["s3", "az", "gs"])
def test_a_self_signed_endpoint_is_refused_unless_its_ca_is_given(cloud: str, tls_endpoint: tuple[str, Path],
                                                                   monkeypatch: Any) -> None:
    endpoint, cert = tls_endpoint
    for name in _CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    url, options = _store(cloud, endpoint)
    with fscas.open_store(url, existence_cache=False, **options) as store, pytest.raises(Unreachable) as refused:
        run_sync(store.aio.backend.head("Data/x"))
    assert "certificate" in str(refused.value).lower(), refused.value
    # The CA named where that cloud's SDK reads it: the same request now reaches the server (its 404).
    monkeypatch.setenv("AWS_CA_BUNDLE" if cloud == "s3" else "REQUESTS_CA_BUNDLE", str(cert))
    with fscas.open_store(url, existence_cache=False, **options) as store, pytest.raises(ObjectNotFound):
        run_sync(store.aio.backend.head("Data/x"))


@pytest.mark.parametrize("cloud", ["s3", "az", "gs"])
def test_a_proxy_for_the_endpoint_is_honoured_and_no_proxy_lifts_it(cloud: str, request: Any,
                                                                    monkeypatch: Any) -> None:
    from fscas.backends import open_backend
    from fscas.conformance.emulators import free_port
    from fscas.conformance.plugin import unique_bucket

    emulator = request.getfixturevalue({"s3": "moto_server", "az": "azurite", "gs": "fake_gcs"}[cloud])
    bucket = unique_bucket()
    emulator.create_bucket(bucket)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def through(expect_fast: bool) -> None:
        backend = open_backend(emulator.store_url(bucket), **emulator.options())
        try:
            if expect_fast:
                await backend.put("k", b"x")
            else:  # the SDK sends every request to the (dead) proxy: unreachable, named
                with pytest.raises(Unreachable):
                    await backend.put("k", b"x")
            assert (backend._http is not None) is expect_fast
        finally:
            await backend.aclose()

    run_sync(through(False))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    run_sync(through(True))


_CREDENTIAL_HEADERS = ("authorization", "x-amz-security-token", "proxy-authorization")


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "sdk"])
@pytest.mark.parametrize("cloud", ["s3", "az", "gs"])
def test_no_credential_follows_a_redirect_to_another_host(cloud: str, fast: bool) -> None:
    """aiobotocore let aiohttp follow a 307 with the signed request: aiohttp dropped `Authorization`
    but the session token went to the other host. Every path now stops at the redirect, or (the
    Azure and GCS SDKs) follows it with no credential."""
    elsewhere = _serving(_Recording)
    other = f"http://localhost:{elsewhere.server_address[1]}"  # another host, not only another port
    redirecting = _serving(_redirecting_to(other, 307))
    endpoint = f"http://127.0.0.1:{redirecting.server_address[1]}"
    url, options = _store(cloud, endpoint)
    options = {**options, "fast_path": fast}
    if cloud == "s3":
        options["token"] = "SESSION-TOKEN"
    elif cloud == "gs":
        url, options["token"] = url.replace("&token=anon", ""), "ya29.raw-access-token"
    try:
        with fscas.open_store(url, existence_cache=False, **options) as store:
            for call in (store.aio.backend.head("Data/x"), store.aio.backend.put("Data/y", b"hello")):
                with pytest.raises(FscasError) as failed:
                    run_sync(call)
                assert "internal" not in str(failed.value) and "SESSION-TOKEN" not in str(failed.value)
        leaked = [(method, name) for method, headers in elsewhere.seen  # type: ignore[attr-defined]
                  for name in headers if name.lower() in _CREDENTIAL_HEADERS]
        assert not leaked, leaked
        if cloud == "s3" or fast:  # stopped at the redirect, and said so
            assert not elsewhere.seen and "redirect" in str(failed.value), (elsewhere.seen, failed.value)  # type: ignore[attr-defined]
    finally:
        for server in (redirecting, elsewhere):
            server.shutdown()
            server.server_close()
