"""What goes over the wire to S3 and back, for both paths (the fast path and botocore): answers as
`ObjectInfo`, and every failure (botocore's exceptions, the fast path's status codes and connection
errors) as the one fscas error naming the URL and key, never a credential."""

from __future__ import annotations

import base64
import contextlib
import functools
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from fscas.backends.base import ObjectInfo, at
from fscas.backends.http11 import AnswerRefused
from fscas.backends.resend import redirected, unreachable
from fscas.backends.s3_http import error_code, last_modified
from fscas.errors import (
    AccessDenied,
    BucketNotFound,
    ConfigError,
    CredentialsRefused,
    FscasError,
    ObjectExists,
    ObjectNotFound,
    StoreError,
    Unreachable,
)

__all__ = ["RedirectRefused", "chunks", "denied", "info", "info_from_headers", "object_info", "raise_status",
           "translated", "unfollowing_session"]


async def chunks(url: str, key: str, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A body's chunks, a connection that breaks off mid-body raised as the fscas error."""
    with translated(url, key):
        async for chunk in body:
            yield chunk


def info(key: str, r: Mapping[str, Any], size: int, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
    """ObjectInfo from a botocore answer (HeadObject, PutObject, CompleteMultipartUpload)."""
    modified = r.get("LastModified")
    return object_info(key, size, r.get("ETag"), r.get("VersionId"),
                        {n[8:].lower(): v for n, v in r.items() if n.startswith("Checksum") and n != "ChecksumType"},
                        r.get("Metadata", metadata or {}), modified.timestamp() if modified else None)


def info_from_headers(key: str, h: Mapping[str, str], *, size: int | None = None,
                       metadata: Mapping[str, str] | None = None) -> ObjectInfo:
    """ObjectInfo from the raw response headers of the signed fast path (names lowercase)."""
    meta = metadata if metadata is not None else {k[11:]: v for k, v in h.items() if k.startswith("x-amz-meta-")}
    return object_info(key, size if size is not None else int(h.get("content-length", 0)), h.get("etag"),
                        h.get("x-amz-version-id"),
                        {n: h.get(f"x-amz-checksum-{n}") for n in ("crc32", "crc32c", "sha256", "sha1", "crc64nvme")},
                        meta, last_modified(h))


def object_info(key: str, size: int, etag: str | None, version: str | None, b64_checksums: Mapping[str, Any],
                 metadata: Mapping[str, str], modified: float | None) -> ObjectInfo:
    # Full-object checksums only ("-N" marks a composite multipart one); a single-part ETag is the MD5.
    checksums = {n: base64.b64decode(v).hex() for n, v in b64_checksums.items() if isinstance(v, str) and "-" not in v}
    plain = (etag or "").strip('"')
    if len(plain) == 32 and "-" not in plain:
        checksums["md5"] = plain.lower()
    return ObjectInfo(key=key, size=size, metadata=metadata, etag=etag,
                      version_id=None if version in (None, "null") else version, checksums=checksums,
                      last_modified=modified)


def raise_status(url: str, key: str, status: int, body: bytes) -> None:
    """Map an S3 error answer of the fast path to the fscas error botocore's path would raise."""
    code = error_code(body) or ""
    if 300 <= status < 400:
        raise redirected(url, key, status)
    if code == "NoSuchBucket":
        raise BucketNotFound(f"{url}: bucket does not exist")
    if status == 404 or code in _NOT_FOUND:
        raise ObjectNotFound(f"{at(url, key)}: not found")
    if status == 403 or code in _DENIED:
        raise denied(url, key, code)
    if status in (409, 412) or code in _EXISTS:
        raise ObjectExists(f"{at(url, key)}: already exists")
    raise StoreError(f"{at(url, key)}: HTTP {status} {code}".rstrip())


_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_CREDENTIALS_REFUSED = {
    "InvalidAccessKeyId": "the server does not know this access key id",
    "SignatureDoesNotMatch": "the secret key does not match the access key id",
    "ExpiredToken": "the session token has expired", "TokenRefreshRequired": "the session token has expired",
    "InvalidToken": "the session token is not valid",
}


def denied(url: str, key: str, code: str) -> AccessDenied:
    """Bad credentials and a refused permission are different mistakes; say which one it is."""
    if code in _CREDENTIALS_REFUSED:
        return CredentialsRefused(f"{url}: credentials refused: {_CREDENTIALS_REFUSED[code]} ({code})")
    return AccessDenied(f"{at(url, key)}: access denied ({code})")


_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
           "InvalidToken", "AllAccessDisabled", "AccountProblem"}
_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


@contextlib.contextmanager
def translated(url: str, key: str) -> Iterator[None]:
    """Map botocore/s3fs errors to fscas errors naming the URL and key, never a credential."""
    from botocore import exceptions as bx

    # aiohttp's errors only where s3fs has loaded it: importing it costs 0.23 s, half of what a
    # fast-path command that moves little takes in all.
    http = (aiohttp.ClientError,) if (aiohttp := sys.modules.get("aiohttp")) is not None else ()

    try:
        yield
    except FscasError:  # already ours, the store's or the local file's (a streamed body reads one)
        raise
    except (bx.NoCredentialsError, bx.PartialCredentialsError) as e:
        raise AccessDenied(f"{url}: no AWS credentials: give key= and secret=, a profile, or set "
                           f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ({type(e).__name__})") from e
    except bx.ProfileNotFound as e:
        raise ConfigError(f"{url}: AWS profile {e.kwargs.get('profile')!r} not found in the shared config") from e
    except AnswerRefused as e:  # a limit crossed: a clean error, not a reason to try again
        raise StoreError(f"{at(url, key)}: {e}") from e
    except (TimeoutError, bx.ConnectionError, bx.HTTPClientError, ConnectionError, *http) as e:
        if isinstance(refused := getattr(e, "kwargs", {}).get("error"), RedirectRefused):
            raise redirected(url, key, *refused.args) from e
        # bx.ConnectionError: the endpoint, a proxy, TLS or a connect timeout; HTTPClientError: read timeouts, resets.
        # The fast path's own errors say what happened (which limit, a certificate); others keep to their type.
        raise unreachable(url, key, e) from e
    except (bx.ClientError, OSError) as e:
        cause = e if isinstance(e, bx.ClientError) else e.__cause__
        response = getattr(cause, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        message = response.get("Error", {}).get("Message") or code or type(e).__name__
        if code == "NoSuchBucket":
            raise BucketNotFound(f"{url}: bucket does not exist") from e
        if code in _NOT_FOUND:
            raise ObjectNotFound(f"{at(url, key)}: not found") from e
        if code in _DENIED:
            raise denied(url, key, code) from e
        if code in _EXISTS:
            raise ObjectExists(f"{at(url, key)}: already exists") from e
        if isinstance(e, FileNotFoundError):
            raise ObjectNotFound(f"{at(url, key)}: not found") from e
        if isinstance(e, PermissionError):
            raise AccessDenied(f"{at(url, key)}: access denied") from e
        if isinstance(e, ConnectionError):
            raise Unreachable(f"{at(url, key)}: endpoint unreachable") from e
        raise StoreError(f"{at(url, key)}: {message}") from e
    except bx.BotoCoreError as e:  # the rest of botocore's own errors (a response it could not parse...)
        raise StoreError(f"{at(url, key)}: {type(e).__name__}") from e


class RedirectRefused(Exception):
    """The SDK path's answer was a redirect (status, Location): not followed, see `resend.redirected`."""


@functools.cache
def unfollowing_session() -> type:
    """aiobotocore's HTTP session class, made not to follow redirects, as botocore's own never does.

    aiobotocore leaves aiohttp's default (follow up to 10), and aiohttp drops only `Authorization` on a
    redirect to another host: the signed request's `X-Amz-Security-Token` went there. A 3xx now ends
    the request as `RedirectRefused` (returned as an answer, botocore's S3 region redirector would ask
    the same endpoint for the bucket's region without end). `_get_session(proxy_url)` is aiobotocore's
    (2.13 to 3.x, bounded in pyproject); a release without it fails tests/backends/test_tls.py.
    """
    from aiobotocore.httpsession import AIOHTTPSession

    class Unfollowing:
        def __init__(self, session: Any) -> None:
            self._session = session

        async def request(self, *args: Any, **kwargs: Any) -> Any:
            response = await self._session.request(*args, allow_redirects=False, **kwargs)
            if 300 <= response.status < 400:
                response.release()
                raise RedirectRefused(response.status, response.headers.get("Location", ""))
            return response

        def __getattr__(self, name: str) -> Any:
            return getattr(self._session, name)

    class UnfollowingSession(AIOHTTPSession):  # type: ignore[misc]
        async def _get_session(self, proxy_url: Any) -> Any:
            return Unfollowing(await super()._get_session(proxy_url))

    return UnfollowingSession
