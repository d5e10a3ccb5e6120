"""Single-object GET, HEAD and PUT on an S3-compatible endpoint over aiohttp, signed by awscrt's SigV4.

Why: botocore spends about 3 ms of CPU on every request (user-agent assembly, event hooks, date
parsing) — with thousands of small objects that, not the network, bounds a transfer (profiled:
10 of 14 s downloading 3,000 objects from SeaweedFS). Signing is AWS's own C signer (`awscrt`, what
botocore's CRT mode and the AWS SDKs use): 0.03 ms a request, where botocore's pure-Python
`S3SigV4Auth` took 0.17-0.37 ms and was a third of a small-file download's CPU (tests/bench/RESULTS.md).
Used only for path-style custom endpoints (MinIO, SeaweedFS, Ceph, moto) with credentials; AWS
itself (virtual hosts, region redirects) and every other call stay on botocore.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from fscas.backends.base import retry_pause

__all__ = ["Credentials", "S3Http", "signer_available"]

_RETRY_STATUS = {500, 502, 503, 504}
_ATTEMPTS = 5
_CODE = re.compile(rb"<Code>([^<]+)</Code>")

Credentials = tuple[str, str, str | None]
"""(access key, secret key, session token)."""


def signer_available() -> bool:
    """True when awscrt (the `s3` extra) is installed; without it every request goes through botocore."""
    import importlib.util

    return importlib.util.find_spec("awscrt") is not None


class S3Http:
    """Signed single-object requests against `endpoint/bucket/key` (path style)."""

    def __init__(self, endpoint: str, bucket: str, region: str,
                 credentials: Callable[[], Awaitable[Credentials]], *, connections: int = 64) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self.bucket, self.region = bucket, region
        self._credentials = credentials
        self._connections = connections
        self._session: Any = None
        self._signing: tuple[Credentials, Any] | None = None  # the awscrt config of the last credentials

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _signed(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        """The headers of `method path` (already percent-encoded) signed with SigV4 for S3 by awscrt, the
        payload hashed as boto3 does on plain HTTP; every header given is signed too."""
        from awscrt.auth import aws_sign_request
        from awscrt.http import HttpHeaders, HttpRequest

        config = await self._config()
        if body:
            config = config.replace(signed_body_value=hashlib.sha256(body).hexdigest())
        request = HttpRequest(method, path, HttpHeaders([("host", self.host), *headers.items()]))
        aws_sign_request(request, config).result()  # static credentials: done before it returns
        return dict(request.headers)

    async def _config(self) -> Any:
        """The signing config for the current credentials (rebuilt when a refreshing chain rotates them)."""
        credentials = await self._credentials()
        if self._signing is None or self._signing[0] != credentials:
            from awscrt.auth import (
                AwsCredentialsProvider,
                AwsSignatureType,
                AwsSignedBodyHeaderType,
                AwsSignedBodyValue,
                AwsSigningAlgorithm,
                AwsSigningConfig,
            )

            provider = AwsCredentialsProvider.new_static(*credentials)
            self._signing = (credentials, AwsSigningConfig(
                algorithm=AwsSigningAlgorithm.V4, signature_type=AwsSignatureType.HTTP_REQUEST_HEADERS,
                credentials_provider=provider, region=self.region, service="s3",
                signed_body_value=AwsSignedBodyValue.EMPTY_SHA256,
                signed_body_header_type=AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256,
                use_double_uri_encode=False, should_normalize_uri_path=False))  # S3's rules for paths
        return self._signing[1]

    def _client(self) -> Any:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120),
                auto_decompress=False, skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"))
        return self._session

    async def _answer(self, method: str, key: str, body: bytes, headers: Mapping[str, str] | None) -> Any:
        """The response to one signed request whose answer has started (its body not read yet),
        retrying connection errors and 5xx answers.

        Raises:
            aiohttp.ClientError, TimeoutError: after the last attempt (the backend maps them).
        """
        import aiohttp
        import yarl

        session = self._client()
        path = "/" + urllib.parse.quote(f"{self.bucket}/{key}", safe="/~")
        url = yarl.URL(self.endpoint + path, encoded=True)
        for attempt in range(_ATTEMPTS):
            signed = await self._signed(method, path, headers or {}, body)
            try:
                r = await session.request(method, url, data=body if method == "PUT" else None, headers=signed)
                if r.status not in _RETRY_STATUS or attempt == _ATTEMPTS - 1:
                    return r
                r.release()
            except aiohttp.ClientConnectorError:  # refused, unknown host: not transient, one retry only
                if attempt >= 1:
                    raise
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError):
                if attempt == _ATTEMPTS - 1:
                    raise
            await retry_pause(attempt)
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    async def request(self, method: str, key: str, *, body: bytes = b"", headers: Mapping[str, str] | None = None
                      ) -> tuple[int, Mapping[str, str], bytes]:
        """Send one signed request, retrying connection errors and 5xx answers; (status, headers, body).

        Raises:
            aiohttp.ClientError, TimeoutError: after the last attempt (the backend maps them).
        """
        import aiohttp

        for attempt in range(_ATTEMPTS):
            r = await self._answer(method, key, body, headers)
            try:
                return r.status, r.headers, await r.read()
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError):
                if attempt == _ATTEMPTS - 1:  # the answer broke off: the request is repeatable
                    raise
            finally:
                r.release()
            await retry_pause(attempt)
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def streamed(self, key: str, *, headers: Mapping[str, str] | None = None
                       ) -> AsyncIterator[tuple[int, Mapping[str, str], Any]]:
        """One signed GET whose body is read as it arrives: (status, headers, aiohttp stream).

        Retried until the answer starts; a body that breaks off later raises while it is read (the
        caller resumes with a Range).
        """
        r = await self._answer("GET", key, b"", headers)
        try:
            yield r.status, r.headers, r.content
        finally:
            r.release()


def error_code(body: bytes) -> str:
    """The `<Code>` of an S3 XML error body, or ''."""
    m = _CODE.search(body)
    return m.group(1).decode(errors="replace") if m else ""


def last_modified(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Last-Modified")
    return parsedate_to_datetime(value).timestamp() if value else None
