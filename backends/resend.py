"""One retry rule for every request fscas sends itself (the S3 and Azure fast paths over `http11`).

A request is signed anew and sent again after a broken or silent connection, a 429 or a 5xx, with
`retry_pause` between tries: up to `attempts` tries, but a connection that could not even be opened
(refused, unknown host: not transient) only twice. Whether an earlier copy may have reached the
server is reported, so a conditional write refused after a resend can be checked for being its own.
The SDK paths (botocore, gcsfs, azure-core) keep their SDK's retry policy, set to the same budget.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from fscas.backends.base import at, retry_pause
from fscas.backends.http11 import Answer, CannotConnect, HttpClient, Streamed
from fscas.errors import StoreError, Unreachable, redact

__all__ = ["ATTEMPTS", "RETRY_STATUS", "Sign", "ca_bundle", "md5", "proxy_applies", "redirected", "retryable", "send",
           "stream", "trusting_connector", "unreachable"]

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})  # 429 and 503 are S3's SlowDown and Azure's ServerBusy
ATTEMPTS = 5
"""Tries of one request, botocore's `standard` mode default."""

Sign = Callable[[], Awaitable[Iterable[tuple[str, str]]]]
"""Makes the headers of one try (a fresh date and signature each time)."""


def retryable(error: BaseException, attempt: int, attempts: int) -> bool:
    """Whether try `attempt` (from 0), failed with `error`, is tried again."""
    return attempt < 1 if isinstance(error, CannotConnect) else attempt < attempts - 1


async def send(client: HttpClient, method: str, target: str, sign: Sign, body: bytes | Streamed = b"", *,
               attempts: int = ATTEMPTS, limit: int | None = None) -> tuple[Answer, bytes, bool]:
    """`method target` sent until it is answered without a retryable status, or tries run out:
    (answer, body, whether an earlier copy may have reached the server).

    Raises:
        ConnectionError, TimeoutError: the last try's; `http11.AnswerRefused` at once (never retried).
    """
    replayed = False
    for attempt in range(attempts):
        try:
            answer, data = await client.request(method, target, await sign(), body, limit=limit)
            replayed = replayed or answer.replayed
            if answer.status not in RETRY_STATUS or attempt == attempts - 1:
                return answer, data, replayed
        except (ConnectionError, TimeoutError) as e:
            if not retryable(e, attempt, attempts):
                raise
            replayed = replayed or not isinstance(e, CannotConnect)  # it may have been received
        await retry_pause(attempt)
    raise AssertionError("unreachable")  # the loop returns or raises on its last attempt


@contextlib.asynccontextmanager
async def stream(client: HttpClient, target: str, sign: Sign, *, attempts: int = ATTEMPTS
                 ) -> AsyncIterator[tuple[Answer, AsyncIterator[bytes]]]:
    """One GET whose body is read as it arrives, retried until its answer starts; a body that
    breaks off later raises while it is read (the caller resumes with a range)."""
    for attempt in range(attempts):
        stack = contextlib.AsyncExitStack()
        try:
            answer, chunks = await stack.enter_async_context(client.stream("GET", target, await sign()))
        except (ConnectionError, TimeoutError) as e:
            if not retryable(e, attempt, attempts):
                raise
        else:
            if answer.status not in RETRY_STATUS or attempt == attempts - 1:
                async with stack:
                    yield answer, chunks
                return
            await stack.aclose()
        await retry_pause(attempt)
    raise AssertionError("unreachable")


def proxy_applies(url: str) -> bool:
    """Whether `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` (less `NO_PROXY`) would send requests to `url`
    through a proxy, as requests, botocore and azure-core read them: the fast paths, which speak to
    the server directly, then step aside for the SDK path."""
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


def ca_bundle() -> str | None:
    """The trust store named for requests-based SDKs (`REQUESTS_CA_BUNDLE`, else `SSL_CERT_FILE`): what
    the Azure and GCS fast paths check certificates against (None: the system's)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or None


async def md5(body: bytes | Streamed) -> bytes:
    """The MD5 digest of a request body, a streamed one read again: what a server's ETag or
    Content-MD5 says it holds, to tell whether a write refused after a resend was our own copy."""
    digest = hashlib.md5(usedforsecurity=False)
    if isinstance(body, Streamed):
        async for chunk in body.chunks():
            digest.update(chunk)
    else:
        digest.update(body)
    return digest.digest()


def unreachable(url: str, key: str, error: BaseException, *, ours: bool | None = None) -> Unreachable:
    """A connection that failed or fell silent, as the fscas error naming the URL and key. The
    fast paths' own errors (`ours`; by default: plain `ConnectionError`/`TimeoutError` and
    `CannotConnect`) say what happened (which limit, a certificate); an SDK's keep to its type name."""
    if ours is None:
        ours = type(error) in (TimeoutError, ConnectionError) or isinstance(error, CannotConnect)
    detail = f": {error}" if ours and str(error) else ""
    if not detail and (tls := _tls_failure(error)):
        detail = f": {tls}"  # an SDK's certificate failure (through a proxy's tunnel, say) says so too
    return Unreachable(f"{at(url, key)}: endpoint unreachable ({type(error).__name__}{detail})")


def trusting_connector(ca_bundle: str) -> Any:
    """An aiohttp connector trusting `ca_bundle`, for an SDK's session: aiohttp reads no CA variable
    itself, and one SSL context made here serves every request (not one per request)."""
    import aiohttp

    return aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca_bundle))


def _tls_failure(error: BaseException | None) -> str:
    """What a TLS failure somewhere in `error`'s chain says ("certificate verify failed: ..."), or ""."""
    for _ in range(8):  # SDKs wrap: botocore's SSLError around aiohttp's around ssl's
        if error is None:
            return ""
        if isinstance(error, ssl.SSLError):  # aiohttp's certificate error is one too, without ssl's fields
            why = getattr(error, "verify_message", None) or getattr(error, "reason", None)
            if why:
                verify = isinstance(error, ssl.SSLCertVerificationError)
                return f"certificate verify failed: {why}" if verify else f"TLS failed: {why}"
        error = error.__cause__ or error.__context__
    return ""


def redirected(url: str, key: str, status: int, location: str = "") -> StoreError:
    """A 3xx, never followed on any path: the request carries credentials, and whatever `Location`
    names would receive them. The user gives the URL the endpoint redirects to instead."""
    to = f" (to {redact(location)})" if location else ""
    return StoreError(f"{at(url, key)}: HTTP {status}: the endpoint redirects{to}; fscas does not follow "
                      "redirects with credentials: give the URL it redirects to")
