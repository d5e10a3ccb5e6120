"""Object GET, metadata, upload and DELETE on GCS's JSON API (or fake-gcs-server), sent by `http11`.

Why: gcsfs and aiohttp cost a command 0.35 s of imports before the first byte moves (a pull of
2,000 small files from fake-gcs-server takes 1.1 s in all with rclone), and aiohttp's session about
0.25 ms of CPU a request. Credentials are never handled by code of ours: anonymous and a raw access
token need none; every other form (a key file, application-default credentials, the metadata
server, gcsfs's cache) is resolved and refreshed by gcsfs's own `GoogleCredentials`, whose headers
each request carries. Listing, resumable uploads and compare-and-swap stay on gcsfs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

from fscas.backends import resend
from fscas.backends.base import FileBody, at
from fscas.backends.http11 import Answer, AnswerRefused, HttpClient, Streamed
from fscas.errors import (
    AccessDenied,
    BucketNotFound,
    CredentialsRefused,
    ObjectExists,
    ObjectNotFound,
    StoreError,
)

__all__ = ["Authorize", "GCSHttp", "status_error", "translated"]

Authorize = Callable[[dict[str, str]], Awaitable[None]]
"""Adds the credential's headers to a request's (nothing for anonymous access)."""


class GCSHttp:
    """Single-object requests to `endpoint/storage/v1/b/<bucket>/o/<name>`.

    Retried by `resend`'s rule (and 408, which GCS answers to a request it gave up on); what is left
    raises `ConnectionError`, `TimeoutError` or `http11.AnswerRefused`.
    """

    def __init__(self, endpoint: str, bucket: str, authorize: Authorize, *, connections: int = 64,
                 connect_timeout: float = 20, read_timeout: float = 60, ca_bundle: str | None = None,
                 attempts: int = resend.ATTEMPTS) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        self.host = parts.netloc
        self._root = parts.path.rstrip("/")
        self._bucket = urllib.parse.quote(bucket, safe="")
        self._authorize = authorize
        self._attempts = max(1, attempts)
        self._client = HttpClient.for_url(endpoint, ca_bundle=ca_bundle, connections=connections,
                                          connect_timeout=connect_timeout, read_timeout=read_timeout)

    async def close(self) -> None:
        await self._client.close()

    def _object(self, name: str, **query: str) -> str:
        target = f"{self._root}/storage/v1/b/{self._bucket}/o/{urllib.parse.quote(name, safe='')}"
        return target + ("?" + urllib.parse.urlencode(query) if query else "")

    async def _headers(self, headers: Mapping[str, str]) -> list[tuple[str, str]]:
        fields = dict(headers)
        await self._authorize(fields)
        return [("Host", self.host), *fields.items()]

    async def _send(self, method: str, target: str, headers: Mapping[str, str], body: bytes | Streamed = b"",
                    limit: int | None = None) -> tuple[Answer, bytes]:
        async def sign() -> list[tuple[str, str]]:
            return await self._headers(headers)

        answer, data, _ = await resend.send(self._client, method, target, sign, body, attempts=self._attempts,
                                            limit=limit)
        return answer, data

    async def metadata(self, name: str) -> tuple[int, bytes]:
        """The object's JSON resource: (status, body)."""
        answer, data = await self._send("GET", self._object(name), {})
        return answer.status, data

    async def media(self, name: str, *, start: int = 0, end: int | None = None) -> tuple[int, bytes]:
        """The object's bytes from `start` to `end` (exclusive): (status, body)."""
        ranged = {"Range": f"bytes={start}-{'' if end is None else end - 1}"} if start or end is not None else {}
        answer, data = await self._send("GET", self._object(name, alt="media"), ranged,
                                        limit=None if end is None else end - start)
        return answer.status, data

    async def delete(self, name: str) -> int:
        answer, _ = await self._send("DELETE", self._object(name), {})
        return answer.status

    async def upload(self, name: str, data: bytes | FileBody, metadata: Mapping[str, str] | None, *,
                     if_absent: bool) -> tuple[int, bytes]:
        """One multipart upload (the object's resource and its bytes in one request): (status, body).

        A create-only upload (`ifGenerationMatch=0`) sent more than once may be refused (412) by its
        own first copy: the caller sees ObjectExists, which for content-addressed data means the
        same bytes are there.
        """
        boundary = uuid.uuid4().hex
        resource = json.dumps({"name": name, **({"metadata": dict(metadata)} if metadata else {})})
        head = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{resource}\r\n"
                f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        body: bytes | Streamed
        if isinstance(data, FileBody):
            async def chunks() -> AsyncIterator[bytes]:
                yield head
                async for chunk in data.reread():
                    yield chunk
                yield tail
            body = Streamed(len(head) + data.size + len(tail), chunks)
        else:
            body = head + data + tail
        query = {"uploadType": "multipart", **({"ifGenerationMatch": "0"} if if_absent else {})}
        target = f"{self._root}/upload/storage/v1/b/{self._bucket}/o?{urllib.parse.urlencode(query)}"
        answer, reply = await self._send("POST", target,
                                         {"Content-Type": f'multipart/related; boundary="{boundary}"'}, body)
        return answer.status, reply

    @contextlib.asynccontextmanager
    async def streamed(self, name: str, *, start: int = 0) -> AsyncIterator[tuple[Answer, AsyncIterator[bytes]]]:
        """One GET of the object's bytes from `start`, read as they arrive (`resend.stream`)."""
        ranged = {"Range": f"bytes={start}-"} if start else {}

        async def sign() -> list[tuple[str, str]]:
            return await self._headers(ranged)

        async with resend.stream(self._client, self._object(name, alt="media"), sign,
                                 attempts=self._attempts) as answer:
            yield answer


def static_authorization(token: str | None) -> Authorize:
    """Anonymous access (None), or one raw access token, used as is."""
    async def authorize(headers: dict[str, str]) -> None:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
    return authorize


def gcsfs_authorization(credentials: Any) -> Authorize:
    """gcsfs's `GoogleCredentials`: its headers, refreshed by it (in a thread: a refresh is a request)."""
    async def authorize(headers: dict[str, str]) -> None:
        if credentials.credentials is not None and not credentials._credentials_valid(60):
            await asyncio.to_thread(credentials.maybe_refresh)
        credentials.apply(headers)
    return authorize


def status_error(url: str, key: str, status: int, body: bytes,
                 missing: type[ObjectNotFound] = ObjectNotFound) -> StoreError:
    """A fast-path answer of `status` as the fscas error gcsfs's would have become."""
    try:
        message = str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = body[:200].decode("utf-8", "replace")
    if 300 <= status < 400:
        return resend.redirected(url, key, status)
    if status == 404:
        lowered = message.lower()
        if missing is BucketNotFound or "bucket does not exist" in lowered or "bucket not found" in lowered:
            return BucketNotFound(f"{url}: bucket does not exist")
        return ObjectNotFound(f"{at(url, key)}: not found")
    if status == 412:
        return ObjectExists(f"{at(url, key)}: already exists")
    if status == 401:
        return CredentialsRefused(f"{url}: credentials refused (401: the token is not valid or has expired)")
    if status == 403:
        return AccessDenied(f"{at(url, key)}: access denied ({status})")
    return StoreError(f"{at(url, key)}: HTTP {status}: {message}".rstrip(": "))


@contextlib.contextmanager
def translated(url: str, key: str) -> Iterator[None]:
    """The fast path's connection failures and refused answers as fscas errors (no gcsfs import)."""
    try:
        yield
    except StoreError:
        raise
    except AnswerRefused as e:
        raise StoreError(f"{at(url, key)}: {e}") from e
    except (ConnectionError, TimeoutError) as e:
        raise resend.unreachable(url, key, e, ours=True) from e
