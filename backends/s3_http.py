"""Object GET, HEAD, PUT, DELETE and listing on an S3-compatible endpoint, signed by awscrt's SigV4, sent by `http11`.

Why: botocore spends about 3 ms of CPU on every request (user-agent assembly, event hooks, date
parsing) — with thousands of small objects that, not the network, bounds a transfer (profiled:
10 of 14 s downloading 3,000 objects from SeaweedFS). Signing is AWS's own C signer (`awscrt`, what
botocore's CRT mode and the AWS SDKs use): 0.03 ms a request, where botocore's pure-Python
`S3SigV4Auth` took 0.17-0.37 ms. The bytes go over `fscas.backends.http11` (llhttp's parser, one
write per request), where aiohttp's session cost 0.25 ms a request (tests/bench/RESULTS.md).
Used only for path-style custom endpoints (MinIO, SeaweedFS, Ceph, moto) with credentials; AWS
itself (virtual hosts, region redirects), multipart uploads and every other call stay on botocore.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from fscas.backends import resend
from fscas.backends.http11 import HttpClient, Streamed
from fscas.backends.resend import ATTEMPTS

__all__ = ["ATTEMPTS", "UNSIGNED", "Credentials", "Listed", "S3Http", "error_code", "last_modified", "parse_listing",
           "signer_available"]

_CODE = re.compile(rb"<Code>([^<]+)</Code>")
UNSIGNED = "UNSIGNED-PAYLOAD"
"""The `x-amz-content-sha256` of a body whose hash the signature does not carry (SigV4's own value)."""
_PROBE_BODY = b"fscas: does this server check x-amz-content-sha256 against the body?"

Credentials = tuple[str, str, str | None]
"""(access key, secret key, session token)."""


def signer_available() -> bool:
    """True when awscrt and httptools (the `s3` extra) are installed; else botocore carries every request."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("awscrt", "httptools"))


class S3Http:
    """Signed single-object requests against `endpoint/bucket/key` (path style).

    Answers' header names are lowercase. Connection errors, 429 and 5xx answers are retried with
    backoff (a refused connection or an unknown host once only); what is left raises
    `ConnectionError` or `TimeoutError`, which the backend maps, or `AnswerRefused` (an answer past
    `http11.Limits`, never retried).

    Args:
        ca_bundle: the trust store for https (botocore's `ca_bundle`: `AWS_CA_BUNDLE` or the shared
            config); the system's if None.
        attempts: tries of one request (botocore's `max_attempts`).
    """

    def __init__(self, endpoint: str, bucket: str, region: str,
                 credentials: Callable[[], Awaitable[Credentials]], *, connections: int = 64,
                 connect_timeout: float = 60, read_timeout: float = 60, ca_bundle: str | None = None,
                 attempts: int = ATTEMPTS) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self.bucket, self.region = bucket, region
        self._credentials = credentials
        self._attempts = max(1, attempts)
        self._client = HttpClient.for_url(endpoint, ca_bundle=ca_bundle, connections=connections,
                                          connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._signing: tuple[Credentials, Any, dict[str, Any]] | None = None  # config of the last credentials
        # Whether signing a body's SHA-256 protects it: over TLS the channel already does (what the AWS
        # SDKs rely on for streamed uploads); over plain HTTP only if the server checks it (probed).
        self._checks_payload: bool | None = False if parts.scheme == "https" else None
        self._probing: asyncio.Lock | None = None

    async def close(self) -> None:
        await self._client.close()

    async def payload_hash_checked(self, probe_key: str) -> bool:
        """Whether a body's SHA-256 in the signature is worth a reading of the body: False over TLS,
        else whether this server refuses a body that does not match it.

        AWS and MinIO check it; SeaweedFS (4.48) and moto do not, and there the hashing pass over a
        large file is a whole extra read for nothing (its bytes are checked against the manifest by
        the sending pass either way). Found out once per client with one tiny PUT of `probe_key`
        carrying a wrong hash; an object the server took is deleted again. Any refusal keeps the
        hash signed.
        """
        if self._checks_payload is None:
            self._probing = self._probing or asyncio.Lock()
            async with self._probing:
                if self._checks_payload is None:
                    self._checks_payload = await self._probe(probe_key)
        return self._checks_payload

    async def _probe(self, key: str) -> bool:
        path = self._path(key)
        wrong = hashlib.sha256(_PROBE_BODY + b"!").hexdigest()
        status, _, _, _ = await self._send("PUT", path, {}, Streamed(len(_PROBE_BODY), _once(_PROBE_BODY)), wrong)
        if status >= 300:  # refused: AWS and MinIO say XAmzContentSHA256Mismatch, Ceph BadDigest
            return True
        with contextlib.suppress(ConnectionError, TimeoutError):  # a credential that may write but not delete
            await self._send("DELETE", path, {}, b"", None)
        return False

    async def _signed(self, method: str, path: str, headers: Mapping[str, str], payload: str | None
                      ) -> list[tuple[str, str]]:
        """The headers of `method path` (already percent-encoded) signed with SigV4 for S3 by awscrt, with
        `payload` the body's SHA-256 (hex; None: no body), as boto3 signs on plain HTTP; every header
        given is signed too."""
        from awscrt.auth import aws_sign_request
        from awscrt.http import HttpHeaders, HttpRequest

        config, settings = await self._config()
        if payload is not None:  # a fresh config, not `replace` (which reads back every field through C: 3x the cost)
            config = type(config)(**settings, signed_body_value=payload)
        request = HttpRequest(method, path, HttpHeaders([("host", self.host), *headers.items()]))
        aws_sign_request(request, config).result()  # static credentials: done before it returns
        return list(request.headers)

    async def _config(self) -> tuple[Any, dict[str, Any]]:
        """The signing config for the current credentials (rebuilt when a refreshing chain rotates them),
        and its settings but the body's hash."""
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

            settings: dict[str, Any] = {
                "algorithm": AwsSigningAlgorithm.V4, "signature_type": AwsSignatureType.HTTP_REQUEST_HEADERS,
                "credentials_provider": AwsCredentialsProvider.new_static(*credentials), "region": self.region,
                "service": "s3", "signed_body_header_type": AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256,
                "use_double_uri_encode": False, "should_normalize_uri_path": False}  # S3's rules for paths
            config = AwsSigningConfig(**settings, signed_body_value=AwsSignedBodyValue.EMPTY_SHA256)
            self._signing = (credentials, config, settings)
        return self._signing[1], self._signing[2]

    def _path(self, key: str) -> str:
        return "/" + urllib.parse.quote(f"{self.bucket}/{key}", safe="/~")

    async def list_page(self, prefix: str, token: str | None) -> tuple[int, bytes]:
        """One ListObjectsV2 page of `prefix` (after continuation `token`): (status, XML body). Keys
        come URL-encoded (`encoding-type=url`, decoded as botocore does: `+` is a space): a key XML 1.0
        cannot carry still lists."""
        query = {"list-type": "2", "encoding-type": "url", "prefix": prefix, **({"continuation-token": token}
                                                                                   if token else {})}
        target = "/" + urllib.parse.quote(self.bucket, safe="~") + "?" + "&".join(
            f"{k}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
        status, _, data, _ = await self._send("GET", target, {}, b"", None)
        return status, data

    async def request(self, method: str, key: str, *, body: bytes | Streamed = b"",
                      headers: Mapping[str, str] | None = None, payload_sha256: str | None = None,
                      limit: int | None = None) -> tuple[int, Mapping[str, str], bytes]:
        """Send one signed request; (status, headers, body) of its answer (`limit`: the most body
        bytes it may carry, `http11.Limits.body_bytes` if not given).

        A conditional PUT (`If-None-Match`, `If-Match`) sent more than once, whose answer is 412, may
        have been refused because its own first copy landed: the object is then read back (HEAD)
        and, if it holds these very bytes (its MD5 ETag), the write is reported as done.

        A `Streamed` body needs `payload_sha256`: its SHA-256 in hex, which AWS and MinIO check against
        what they receive, or `UNSIGNED` where `payload_hash_checked` is False (SeaweedFS does not
        check: a streamed body must check itself either way, as `FileBody` does). A whole body is
        hashed here, unless this server is known not to check.
        """
        if isinstance(body, Streamed):
            if payload_sha256 is None:
                raise ValueError("a streamed body needs its SHA-256 (or UNSIGNED) to be signed")
        elif body:
            payload_sha256 = hashlib.sha256(body).hexdigest() if self._checks_payload is not False else UNSIGNED
        path = self._path(key)
        status, answer, data, replayed = await self._send(method, path, headers or {}, body, payload_sha256, limit)
        if status == 412 and replayed and method == "PUT" and _conditional(headers):
            ours = await self._holds(path, body)
            if ours is not None:
                return 200, ours, b""
        return status, answer, data

    async def _holds(self, path: str, body: bytes | Streamed) -> Mapping[str, str] | None:
        """The object's headers if it holds exactly `body` (by its single-part MD5 ETag), else None."""
        status, answer, _, _ = await self._send("HEAD", path, {}, b"", None, 0)
        etag = answer.get("etag", "").strip('"').lower()
        if status != 200 or len(etag) != 32:
            return None
        return answer if (await resend.md5(body)).hex() == etag else None

    async def _send(self, method: str, target: str, headers: Mapping[str, str], body: bytes | Streamed,
                    payload_sha256: str | None, limit: int | None = None
                    ) -> tuple[int, Mapping[str, str], bytes, bool]:
        """`target` signed and sent by `resend.send` (signed anew each try): (status, headers, body,
        whether an earlier copy may have reached the server)."""
        async def sign() -> list[tuple[str, str]]:
            return await self._signed(method, target, headers, payload_sha256)

        answer, data, replayed = await resend.send(self._client, method, target, sign, body,
                                                   attempts=self._attempts, limit=limit)
        return answer.status, answer.headers, data, replayed

    @contextlib.asynccontextmanager
    async def streamed(self, key: str, *, headers: Mapping[str, str] | None = None
                       ) -> AsyncIterator[tuple[int, Mapping[str, str], AsyncIterator[bytes]]]:
        """One signed GET whose body is read as it arrives: (status, headers, chunks) (`resend.stream`)."""
        path = self._path(key)

        async def sign() -> list[tuple[str, str]]:
            return await self._signed("GET", path, headers or {}, None)

        async with resend.stream(self._client, path, sign, attempts=self._attempts) as (answer, chunks):
            yield answer.status, answer.headers, chunks


def _once(data: bytes) -> Callable[[], AsyncIterator[bytes]]:
    async def chunks() -> AsyncIterator[bytes]:
        yield data
    return chunks


def _conditional(headers: Mapping[str, str] | None) -> bool:
    return any(k.lower() in ("if-none-match", "if-match") for k in headers or ())


Listed = tuple[str, int, "str | None", "float | None"]
"""(key, size, ETag, last modified) of one listed object."""


def parse_listing(body: bytes) -> tuple[list[Listed], str | None]:
    """The objects of a ListObjectsV2 page and its continuation token (None: the last page).

    Raises:
        ValueError: not a listing (malformed XML, a truncated page without a token).
    """
    import xml.etree.ElementTree as ET  # expat: entity expansion is bounded, no external entities
    from datetime import datetime

    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise ValueError(f"malformed listing ({e})") from None
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    encoded = root.findtext(f"{ns}EncodingType") == "url"
    items: list[Listed] = []
    for c in root.iter(f"{ns}Contents"):
        key, size, modified = c.findtext(f"{ns}Key"), c.findtext(f"{ns}Size"), c.findtext(f"{ns}LastModified")
        if key is None or size is None or not size.isdigit():
            raise ValueError("a listed object without a key or size")
        items.append((urllib.parse.unquote_plus(key) if encoded else key, int(size), c.findtext(f"{ns}ETag"),
                      datetime.fromisoformat(modified).timestamp() if modified else None))
    if root.findtext(f"{ns}IsTruncated") != "true":
        return items, None
    token = root.findtext(f"{ns}NextContinuationToken")
    if not token:
        raise ValueError("a truncated listing without a continuation token")
    return items, token


def error_code(body: bytes) -> str:
    """The `<Code>` of an S3 XML error body, or ''."""
    m = _CODE.search(body)
    return m.group(1).decode(errors="replace") if m else ""


def last_modified(headers: Mapping[str, str]) -> float | None:
    """`Last-Modified` of an answer whose header names are lowercase, as seconds since the epoch."""
    value = headers.get("last-modified")
    return parsedate_to_datetime(value).timestamp() if value else None
