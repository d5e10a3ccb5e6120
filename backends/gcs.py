"""Google Cloud Storage through gcsfs's JSON-API client.

Quirks handled here and nowhere else:
- gcsfs 2026's default class probes the bucket type over gRPC and stalls against an emulator; we
  use `gcsfs.core.GCSFileSystem`, the plain JSON-API client.
- Create-only is `ifGenerationMatch=0`; a loser gets 412 (FileExistsError in gcsfs).
- A resumable upload is finalised by its last chunk, so the last chunk is held back until the
  stream ends cleanly; a stream that raises cancels the session and nothing becomes visible.
- `md5Hash` and `crc32c` come back base64; we report them as hex. Composite objects have no MD5.
- gcsfs sends a raw access token to oauth2.googleapis.com to learn its expiry (a credential leaving
  for a host the user did not name, and a hang offline): we hand gcsfs a `Credentials` object.
- gcsfs retries every request 6 times with backoff up to 32 s, connection refused included (31 s
  before an unreachable endpoint is reported): we put our own short policy in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import types
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import attrs

from fscas.backends import gcs_http, resend
from fscas.backends.base import (
    Body,
    Capabilities,
    FileBody,
    ObjectInfo,
    check_metadata,
    check_send_by,
    chunks_of,
    read_part,
    swap_is_honoured,
)
from fscas.backends.gcs_http import GCSHttp
from fscas.backends.gcs_wire import info, json_or_none, retried, translated
from fscas.backends.url import Location, build_options
from fscas.errors import (
    BucketNotFound,
    ConfigError,
    NotSupported,
    ObjectNotFound,
    redact,
)

__all__ = ["GCSBackend", "GCSOptions"]

_QUANTUM = 256 * 2**10  # non-final resumable chunks must be multiples of 256 KiB


@attrs.frozen(kw_only=True)
class GCSOptions:
    """Options of a `gs://` store. Unset values come from Google's default credential chain."""

    endpoint_url: str | None = None
    """Emulator or private endpoint. Env: STORAGE_EMULATOR_HOST."""
    project: str | None = None
    """Billing project. Env: GOOGLE_CLOUD_PROJECT."""
    token: str | None = attrs.field(default=None, repr=False)
    """`anon`, `google_default`, `cloud`, `cache`, the path of a service-account or authorized-user
    JSON file, or a raw OAuth2 access token (used as is: never sent anywhere but the endpoint).
    Unset: Google's default chain. Never printed."""
    part_size: int = 16 * 2**20
    """Resumable chunk size (rounded to 256 KiB); shorter streams go as one request."""
    upload_cutoff: int = 200 * 2**20
    """On the fast path, a local file up to this size goes as one multipart upload even when larger
    than a chunk (S3's `upload_cutoff`)."""
    fast_path: bool = True
    """Send single-object GET/metadata/upload/DELETE over `http11` (`gcs_http`), without importing
    gcsfs for anonymous access or a raw token; a proxy for the endpoint (`HTTPS_PROXY`/`HTTP_PROXY`
    less `NO_PROXY`) or a missing httptools keep every request on gcsfs."""


class GCSBackend:
    """One bucket (and key prefix) on Google Cloud Storage or fake-gcs-server."""

    capabilities = Capabilities(create_only=True, integrity=frozenset({"md5", "crc32c"}))

    def __init__(self, bucket: str, prefix: str = "", options: GCSOptions | None = None) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.options = options or GCSOptions()
        self.endpoint = self.options.endpoint_url or os.environ.get("STORAGE_EMULATOR_HOST")
        where = f"?endpoint_url={redact(self.endpoint)}" if self.endpoint else ""
        self.url = f"gs://{bucket}/{prefix}".rstrip("/") + where
        self._fs: Any = None
        self._http: GCSHttp | None = None
        self._http_decided = False
        self._opening = asyncio.Lock()
        self._swaps: bool | None = None  # whether the server honours ifGenerationMatch (probed on the first swap)

    @classmethod
    def from_location(cls, location: Location, options: Mapping[str, object]) -> GCSBackend:
        return cls(location.bucket, location.prefix, build_options(GCSOptions, location, options))

    def __repr__(self) -> str:
        return f"GCSBackend({self.url!r})"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def _conn(self) -> Any:
        if self._fs is None:
            from gcsfs.core import GCSFileSystem

            o = self.options
            token = self._token()
            session: dict[str, Any] = {"trust_env": True}  # HTTPS_PROXY etc., as requests and botocore
            if ca := resend.ca_bundle():
                session["connector"] = resend.trusting_connector(ca)
            with translated(self.url, ""):
                fs = GCSFileSystem(asynchronous=True, skip_instance_cache=True, endpoint_url=self.endpoint,
                                   project=o.project or os.environ.get("GOOGLE_CLOUD_PROJECT", ""),
                                   token=token, use_listings_cache=False, session_kwargs=session)
                fs._request = types.MethodType(retried(GCSFileSystem._request.__wrapped__), fs)
                await fs._set_session()
            self._fs = fs
        return self._fs

    def _token(self) -> Any:
        """gcsfs's `token`, with a raw access token wrapped so gcsfs does not look it up at Google.

        Raises:
            ConfigError: a token that names a file that does not exist.
        """
        token = self.options.token
        if token is None or token in _TOKEN_METHODS or os.path.isfile(token):
            return token
        if os.sep in token or token.endswith(".json"):
            raise ConfigError(f"{self.url}: token file {token!r} not found; token takes {', '.join(_TOKEN_METHODS)}, "
                              "a JSON key file or an OAuth2 access token")
        from google.oauth2 import credentials

        wrap: Any = credentials.Credentials  # google-auth is untyped
        return wrap(token)

    async def _fast_client(self) -> GCSHttp | None:
        """The fast path's client, made on first use; None where gcsfs must carry every request."""
        if self._http_decided:
            return self._http
        async with self._opening:
            if not self._http_decided:
                endpoint = (self.endpoint or "https://storage.googleapis.com").rstrip("/")
                if "://" not in endpoint:
                    endpoint = f"http://{endpoint}"  # STORAGE_EMULATOR_HOST may name only host:port
                if (self.options.fast_path and importlib.util.find_spec("httptools") is not None
                        and not resend.proxy_applies(endpoint)):
                    token = self._token()
                    if token == "anon" or hasattr(token, "token"):  # no gcsfs needed for these two
                        authorize = gcs_http.static_authorization(getattr(token, "token", None))
                    else:
                        authorize = gcs_http.gcsfs_authorization((await self._conn()).credentials)
                    self._http = GCSHttp(endpoint, self.bucket, authorize, ca_bundle=resend.ca_bundle())
                self._http_decided = True
        return self._http

    @contextlib.contextmanager
    def _fast_errors(self, key: str) -> Iterator[None]:
        """The fast path's failures as fscas errors; gcsfs's only where gcsfs refreshes credentials."""
        with gcs_http.translated(self.url, key), (translated(self.url, key) if self._fs is not None
                                                  else contextlib.nullcontext()):
            yield

    async def _json(self, method: str, key: str, path: str, *args: str, **kwargs: Any) -> Any:
        fs = await self._conn()
        with translated(self.url, key):
            return await fs._call(method, path, *args, json_out=True, **kwargs)

    async def head(self, key: str) -> ObjectInfo:
        if (http := await self._fast_client()) is not None:
            with self._fast_errors(key):
                status, body = await http.metadata(self._key(key))
            if status >= 300:
                raise gcs_http.status_error(self.url, key, status, body)
            return info(key, json.loads(body))
        return info(key, await self._json("GET", key, "b/{}/o/{}", self.bucket, self._key(key)))

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        if end is not None and end <= start:
            return b""
        if (http := await self._fast_client()) is not None:
            with self._fast_errors(key):
                status, data = await http.media(self._key(key), start=start, end=end)
            if status >= 300:
                raise gcs_http.status_error(self.url, key, status, data)
            return data
        fs = await self._conn()
        headers = {"Range": f"bytes={start}-{'' if end is None else end - 1}"} if start or end is not None else {}
        with translated(self.url, key):
            _, data = await fs._call("GET", "b/{}/o/{}", self.bucket, self._key(key), alt="media", headers=headers)
        return bytes(data)

    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        meta = check_metadata(metadata, key) or None
        part_size = max(_QUANTUM, self.options.part_size // _QUANTUM * _QUANTUM)
        http = await self._fast_client()
        if http is not None and isinstance(data, FileBody) and data.size <= self.options.upload_cutoff:
            # Its sending reading checks the file against its manifest entry and holds the last chunk
            # back until it does: what the server stores is what was snapshotted.
            return await self._upload(http, key, data, meta, if_absent)
        chunks = chunks_of(data)
        part = await read_part(chunks, part_size)
        if http is not None and len(part) < part_size:
            return await self._upload(http, key, part, meta, if_absent)
        from gcsfs.core import initiate_upload, simple_upload

        mode = "create" if if_absent else "overwrite"
        fs = await self._conn()
        with translated(self.url, key, missing=BucketNotFound):
            if len(part) < part_size:
                written = await simple_upload(fs, self.bucket, self._key(key), part, meta, mode=mode)
                if written is None:  # gcsfs before 2025 drops the answer: ask for what was written
                    return await self.head(key)
                return info(key, written)
            location = await initiate_upload(fs, self.bucket, self._key(key), metadata=meta, mode=mode)
        try:
            offset = 0
            while True:
                following = await read_part(chunks, part_size)
                total = None if following else offset + len(part)
                result = await self._send(key, location, part, offset, total)
                if total is not None:
                    return info(key, result)
                offset += len(part)
                part = following
        except BaseException:
            with contextlib.suppress(Exception):
                await fs._call("DELETE", location)
            raise

    async def _upload(self, http: GCSHttp, key: str, data: bytes | FileBody, meta: Mapping[str, str] | None,
                      if_absent: bool) -> ObjectInfo:
        with self._fast_errors(key):
            status, body = await http.upload(self._key(key), data, meta, if_absent=if_absent)
        if status >= 300:
            raise gcs_http.status_error(self.url, key, status, body, missing=BucketNotFound)
        return info(key, json.loads(body))

    @contextlib.asynccontextmanager
    async def stream(self, key: str, *, start: int = 0) -> AsyncIterator[AsyncIterator[bytes]]:
        """The object's bytes from `start`, as they arrive: one GET (the caller resumes a broken one)."""
        http = await self._fast_client()
        if http is None:  # gcsfs reads whole answers: ranged GETs of a part each
            yield self._ranges(key, start)
            return
        async with contextlib.AsyncExitStack() as stack:
            with self._fast_errors(key):
                answer, chunks = await stack.enter_async_context(http.streamed(self._key(key), start=start))
                error = b"".join([c async for c in chunks]) if answer.status >= 300 else b""
            if answer.status >= 300:
                raise gcs_http.status_error(self.url, key, answer.status, error)
            yield self._checked(key, chunks)  # outside the translation: a full disk is the caller's error

    async def _checked(self, key: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        with self._fast_errors(key):
            async for chunk in chunks:
                yield chunk

    async def _ranges(self, key: str, start: int) -> AsyncIterator[bytes]:
        size = (await self.head(key)).size
        for offset in range(start, size, self.options.part_size):
            yield await self.get(key, start=offset, end=min(size, offset + self.options.part_size))

    async def _send(self, key: str, location: str, data: bytes, offset: int, total: int | None) -> Any:
        fs = await self._conn()
        last = offset + len(data) - 1
        span = f"bytes {offset}-{last}/{'*' if total is None else total}" if data else f"bytes */{total}"
        with translated(self.url, key, missing=BucketNotFound):
            _, body = await fs._call("POST", location, data=data,
                                     headers={"Content-Range": span, "Content-Length": str(len(data))})
        return json_or_none(body)

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        fs = await self._conn()
        with translated(self.url, key):
            headers, data = await fs._call("GET", "b/{}/o/{}", self.bucket, self._key(key), alt="media")
        return bytes(data), str(headers.get("x-goog-generation", ""))

    async def put_tagged(self, key: str, data: bytes, *, tag: str | None) -> str:
        if self._swaps is None:
            self._swaps = await swap_is_honoured(self._conditional_put, self.delete, "fscas-probe-swap")
        if not self._swaps:
            raise NotSupported(f"{self.url}: the server ignores ifGenerationMatch (probed): no compare-and-swap")
        return await self._conditional_put(key, data, tag)

    async def _conditional_put(self, key: str, data: bytes, tag: str | None) -> str:
        """One multipart upload with `ifGenerationMatch` (the generation `tag`, or 0: absent). A multipart
        upload, not a media one: fake-gcs-server ignores the condition on the latter."""
        fs = await self._conn()
        boundary = uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                f"{json.dumps({'name': self._key(key)})}\r\n--{boundary}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n")
        body = head.encode() + data + f"\r\n--{boundary}--".encode()
        with translated(self.url, key, missing=BucketNotFound):
            r = await fs._call("POST", f"{fs._location}/upload/storage/v1/b/{urllib.parse.quote(self.bucket)}/o",
                               uploadType="multipart", ifGenerationMatch=tag or "0", data=body, json_out=True,
                               headers={"Content-Type": f'multipart/related; boundary="{boundary}"'})
        return str(r["generation"])

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        strip = len(self._key(""))
        page: dict[str, str] = {}
        while True:
            r = await self._json("GET", prefix, "b/{}/o", self.bucket, prefix=self._key(prefix), maxResults=1000,
                                 **page)
            for item in r.get("items", ()):
                yield attrs.evolve(info(item["name"][strip:], item), metadata={})
            if not r.get("nextPageToken"):
                return
            page = {"pageToken": r["nextPageToken"]}

    async def delete(self, key: str) -> None:
        if (http := await self._fast_client()) is not None:  # it checks SEND_BY as the request leaves
            with self._fast_errors(key):
                status = await http.delete(self._key(key))
            if status >= 300 and status != 404:
                raise gcs_http.status_error(self.url, key, status, b"")
            return
        fs = await self._conn()
        check_send_by(self.url, key)
        with contextlib.suppress(ObjectNotFound), translated(self.url, key):
            await fs._call("DELETE", "b/{}/o/{}", self.bucket, self._key(key))

    async def aclose(self) -> None:
        http, self._http, self._http_decided = self._http, None, False
        if http is not None:
            await http.close()
        fs, self._fs = self._fs, None
        if fs is not None and fs.session is not None:
            await fs.session.close()




_TOKEN_METHODS = ("anon", "google_default", "cloud", "cache")
