"""Blob GET, HEAD, PUT and DELETE on Azure Blob Storage (or Azurite), sent by `http11`.

Why: azure-core's async pipeline spends about 1 ms of CPU on every request (policies, header
objects, aiohttp's session), which with thousands of small objects, not the network, bounds a
transfer: 3,000 GETs of 1-16 KiB from Azurite took 4.3 s through the SDK and 1.3 s here, what
obstore's Rust client takes (tests/bench/RESULTS.md). Nothing is signed by code of ours: a request
carries obstore's per-blob SAS (`azure_auth.BlobSas`) or is signed by the SDK's own shared-key
policy (`SharedKeyCredentialPolicy`, about 0.02 ms); a SAS token rides in the query as the SDK
sends it. A client with any other credential (a token credential, `AzureSasCredential`) keeps the
SDK path.
"""

from __future__ import annotations

import base64
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from email.utils import formatdate
from typing import Any

from fscas.backends import resend
from fscas.backends.azure_auth import API_VERSION, BlobSas, SharedKey
from fscas.backends.http11 import Answer, HttpClient, Streamed
from fscas.errors import ConfigError

__all__ = ["AzureHttp", "fast_path_of", "shared_key_policy"]


class _Request:
    """What the SDK's signing policy reads of a request (`azure.core.rest.HttpRequest`'s shape)."""

    def __init__(self, method: str, url: str, headers: dict[str, str], query: Mapping[str, str]) -> None:
        self.method, self.url, self.headers = method, url, headers
        self.query = dict(query)  # the policy signs the canonicalized query (comp=block&blockid=...)


class _PipelineRequest:
    def __init__(self, request: _Request) -> None:
        self.http_request, self.context = request, _NO_CONTEXT


class _Context:
    transport = None


_NO_CONTEXT = _Context()


class AzureHttp:
    """Single-blob requests to `<service URL>/<container>/<blob>`, signed as the SDK client would.

    Answers' header names are lowercase. Retried by `resend`'s rule; what is left raises
    `ConnectionError` or `TimeoutError`, or `http11.AnswerRefused`.

    Args:
        service_url: `https://<account>.blob.core.windows.net/` or Azurite's
            `http://127.0.0.1:10000/devstoreaccount1/`, a SAS token in its query if it has one.
        key: the SDK's `SharedKeyCredentialPolicy`, loaded when needed; None: the query carries the
            token, or anonymous.
        sas: obstore's per-blob SAS, for an account with a key until `key` is loaded.
    """

    def __init__(self, service_url: str, container: str, key: SharedKey | None, *,
                 sas: BlobSas | None = None, api_version: str = API_VERSION, connections: int = 64,
                 connect_timeout: float = 20, read_timeout: float = 60, ca_bundle: str | None = None,
                 attempts: int = resend.ATTEMPTS) -> None:
        parts = urllib.parse.urlsplit(service_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self._base = parts.path.rstrip("/") + "/" + urllib.parse.quote(container, safe="") + "/"
        self._query = f"?{parts.query}" if parts.query else ""
        self._key, self._sas, self._version = key, sas, api_version
        self._attempts = max(1, attempts)
        self._client = HttpClient.for_url(service_url, ca_bundle=ca_bundle, connections=connections,
                                          connect_timeout=connect_timeout, read_timeout=read_timeout)

    async def close(self) -> None:
        await self._client.close()
        if self._key is not None:
            self._key.close()

    def _path(self, blob: str) -> str:
        return self._base + urllib.parse.quote(blob, safe="/~")  # the SDK's quoting of a blob name

    def _authorized(self, method: str, path: str, blob: str) -> tuple[str, bool]:
        """(the target's query, whether the shared key signs each try): a SAS for this blob where
        obstore's signer gives one and the shared key is not loaded yet, else the store's own query
        (a SAS token, or none)."""
        if (self._sas is not None and (self._key is None or self._key.ready() is None)
                and (sas := self._sas.query(method, path, blob)) is not None):
            return f"?{sas}", False
        return self._query, self._key is not None

    def _signed(self, method: str, path: str, headers: Mapping[str, str], length: int,
                query: Mapping[str, str] | None = None, *, keyed: bool = True) -> list[tuple[str, str]]:
        fields = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": self._version, **headers}
        if keyed and self._key is not None:
            if length:  # signed as sent; http11 writes the Content-Length line itself
                fields["Content-Length"] = str(length)
            self._key.now().on_request(_PipelineRequest(_Request(method, self.origin + path, fields, query or {})))
            fields.pop("Content-Length", None)
        return [("Host", self.host), *fields.items()]

    def _refused(self, answer: Answer, keyed: bool) -> bool:
        """A 403 to a SAS: the shared key signs every request from now on (and this one again)."""
        if answer.status != 403 or keyed or self._key is None:  # unkeyed with a key: it carried a SAS
            return False
        self._sas = None
        return True

    async def request(self, method: str, blob: str, *, body: bytes | Streamed = b"",
                      headers: Mapping[str, str] | None = None, limit: int | None = None,
                      query: Mapping[str, str] | None = None) -> tuple[Answer, bytes]:
        """Send one request for `blob`; its answer and body (`limit`: the most body bytes it may carry;
        `query`: parameters such as `comp=block`, signed with the request).

        A create-only PUT (`If-None-Match: *`) sent more than once and refused as existing may have
        been refused because its own first copy landed: the blob's Content-MD5 is then read back
        (HEAD), and if it is these very bytes the write is reported as done.
        """
        path = self._path(blob)
        own, keyed = self._authorized(method, path, blob)
        target = path + own
        if query:
            target += ("&" if own else "?") + urllib.parse.urlencode(query)

        length = body.length if isinstance(body, Streamed) else len(body)

        async def sign() -> list[tuple[str, str]]:
            return self._signed(method, path, headers or {}, length, query, keyed=keyed)

        answer, data, replayed = await resend.send(self._client, method, target, sign, body,
                                                   attempts=self._attempts, limit=limit)
        if self._refused(answer, keyed):
            return await self.request(method, blob, body=body, headers=headers, limit=limit, query=query)
        if answer.status in (409, 412) and replayed and method == "PUT" and (headers or {}).get("If-None-Match"):
            held, _ = await self.request("HEAD", blob, limit=0)
            md5 = base64.b64encode(await resend.md5(body)).decode()  # as Content-MD5 carries it
            if held.status == 200 and held.headers.get("content-md5") == md5:
                return held, b""
        return answer, data

    @contextlib.asynccontextmanager
    async def streamed(self, blob: str, *, start: int = 0) -> AsyncIterator[tuple[Answer, AsyncIterator[bytes]]]:
        """One GET of `blob` from byte `start`, its body read as it arrives (`resend.stream`)."""
        path = self._path(blob)
        headers = {"x-ms-range": f"bytes={start}-"} if start else {}
        own, keyed = self._authorized("GET", path, blob)

        async def sign() -> list[tuple[str, str]]:
            return self._signed("GET", path, headers, 0, keyed=keyed)

        async with resend.stream(self._client, path + own, sign, attempts=self._attempts) as (answer, chunks):
            if not self._refused(answer, keyed):
                yield answer, chunks
                return
        async with self.streamed(blob, start=start) as again:
            yield again


def fast_path_of(client: Any) -> tuple[str, Any] | None:
    """(service URL, signing policy or None) when the SDK `client` can be spoken for by `AzureHttp`;
    None when only the SDK can carry its requests (a token credential, `AzureSasCredential`, or
    httptools or the SDK's signing policy not importable)."""
    import importlib.util

    if importlib.util.find_spec("httptools") is None:
        return None
    try:
        from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
    except ImportError:  # the SDK moved its policy: the SDK path still works
        return None
    credential = client.credential
    if credential is not None and not isinstance(credential, SharedKeyCredentialPolicy):
        return None
    if not isinstance(client.url, str) or urllib.parse.urlsplit(client.url).scheme not in ("http", "https"):
        return None
    return client.url, credential


def shared_key_policy(account: str, key: str) -> Any:
    """azure-storage-blob's own shared-key policy for `account` (a private module: the version range
    in pyproject bounds it)."""
    try:
        from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
    except ImportError as e:
        raise ConfigError(f"az://: signing with an account key needs azure-storage-blob ({e}): "
                          "pip install 'fscas[azure]'") from e
    return SharedKeyCredentialPolicy(account, key)  # type: ignore[no-untyped-call]
