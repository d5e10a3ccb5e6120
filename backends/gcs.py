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

import base64
import contextlib
import json
import os
import types
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import attrs

from fscas.backends.base import (
    Body,
    Capabilities,
    ObjectInfo,
    at,
    check_metadata,
    check_send_by,
    chunks_of,
    read_part,
    retry_pause,
    swap_is_honoured,
)
from fscas.backends.resend import ATTEMPTS, RETRY_STATUS
from fscas.backends.url import Location, build_options
from fscas.errors import (
    AccessDenied,
    BucketNotFound,
    ConfigError,
    CredentialsRefused,
    NotSupported,
    ObjectExists,
    ObjectNotFound,
    StoreError,
    Unreachable,
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
            with _translated(self.url, ""):
                fs = GCSFileSystem(asynchronous=True, skip_instance_cache=True, endpoint_url=self.endpoint,
                                   project=o.project or os.environ.get("GOOGLE_CLOUD_PROJECT", ""),
                                   token=token, use_listings_cache=False)
                fs._request = types.MethodType(_retried(GCSFileSystem._request.__wrapped__), fs)
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

    async def _json(self, method: str, key: str, path: str, *args: str, **kwargs: Any) -> Any:
        fs = await self._conn()
        with _translated(self.url, key):
            return await fs._call(method, path, *args, json_out=True, **kwargs)

    async def head(self, key: str) -> ObjectInfo:
        return _info(key, await self._json("GET", key, "b/{}/o/{}", self.bucket, self._key(key)))

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        if end is not None and end <= start:
            return b""
        fs = await self._conn()
        headers = {"Range": f"bytes={start}-{'' if end is None else end - 1}"} if start or end is not None else {}
        with _translated(self.url, key):
            _, data = await fs._call("GET", "b/{}/o/{}", self.bucket, self._key(key), alt="media", headers=headers)
        return bytes(data)

    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        from gcsfs.core import initiate_upload, simple_upload

        meta = check_metadata(metadata, key) or None
        mode = "create" if if_absent else "overwrite"
        fs = await self._conn()
        part_size = max(_QUANTUM, self.options.part_size // _QUANTUM * _QUANTUM)
        chunks = chunks_of(data)
        part = await read_part(chunks, part_size)
        with _translated(self.url, key, missing=BucketNotFound):
            if len(part) < part_size:
                return _info(key, await simple_upload(fs, self.bucket, self._key(key), part, meta, mode=mode))
            location = await initiate_upload(fs, self.bucket, self._key(key), metadata=meta, mode=mode)
        try:
            offset = 0
            while True:
                following = await read_part(chunks, part_size)
                total = None if following else offset + len(part)
                result = await self._send(key, location, part, offset, total)
                if total is not None:
                    return _info(key, result)
                offset += len(part)
                part = following
        except BaseException:
            with contextlib.suppress(Exception):
                await fs._call("DELETE", location)
            raise

    async def _send(self, key: str, location: str, data: bytes, offset: int, total: int | None) -> Any:
        fs = await self._conn()
        last = offset + len(data) - 1
        span = f"bytes {offset}-{last}/{'*' if total is None else total}" if data else f"bytes */{total}"
        with _translated(self.url, key, missing=BucketNotFound):
            _, body = await fs._call("POST", location, data=data,
                                     headers={"Content-Range": span, "Content-Length": str(len(data))})
        return _json_or_none(body)

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        fs = await self._conn()
        with _translated(self.url, key):
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
        with _translated(self.url, key, missing=BucketNotFound):
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
                yield attrs.evolve(_info(item["name"][strip:], item), metadata={})
            if not r.get("nextPageToken"):
                return
            page = {"pageToken": r["nextPageToken"]}

    async def delete(self, key: str) -> None:
        fs = await self._conn()
        check_send_by(self.url, key)
        with contextlib.suppress(ObjectNotFound), _translated(self.url, key):
            await fs._call("DELETE", "b/{}/o/{}", self.bucket, self._key(key))

    async def aclose(self) -> None:
        fs, self._fs = self._fs, None
        if fs is not None and fs.session is not None:
            await fs.session.close()




_TOKEN_METHODS = ("anon", "google_default", "cloud", "cache")
_RETRY_STATUS = RETRY_STATUS | {408}  # GCS's JSON API also answers 408 to a request it gave up on


def _retried(request: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """gcsfs's unwrapped `_request` with our policy: transient answers and dropped connections are
    retried with a short backoff; a refused connection or an unknown host fails after one retry."""
    import aiohttp
    from gcsfs.retry import HttpError

    async def call(fs: Any, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(ATTEMPTS):
            try:
                return await request(fs, *args, **kwargs)
            except aiohttp.ClientConnectorError:
                if attempt >= 1:
                    raise
            except HttpError as e:
                if e.code not in _RETRY_STATUS or attempt == ATTEMPTS - 1:
                    raise
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, TimeoutError):
                if attempt == ATTEMPTS - 1:
                    raise
            await retry_pause(attempt)
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    return call


def _json_or_none(body: bytes | str | None) -> Any:
    return json.loads(body) if body else None


def _b64hex(value: str | None) -> str | None:
    return base64.b64decode(value).hex() if value else None


def _info(key: str, r: Mapping[str, Any]) -> ObjectInfo:
    checksums = {name: h for name, field in (("md5", "md5Hash"), ("crc32c", "crc32c"))
                 if (h := _b64hex(r.get(field)))}
    updated = r.get("updated")
    return ObjectInfo(key=key, size=int(r["size"]), metadata=r.get("metadata") or {}, etag=r.get("etag"),
                      version_id=str(r["generation"]) if r.get("generation") else None, checksums=checksums,
                      last_modified=datetime.fromisoformat(updated.replace("Z", "+00:00")).timestamp()
                      if updated else None)


@contextlib.contextmanager
def _translated(url: str, key: str, missing: type[ObjectNotFound] = ObjectNotFound) -> Iterator[None]:
    """Map gcsfs/aiohttp/google-auth errors to fscas errors naming the URL and key."""
    import aiohttp
    from gcsfs.retry import HttpError
    from google.auth.exceptions import GoogleAuthError

    try:
        yield
    except StoreError:
        raise
    except FileNotFoundError as e:
        what = "bucket does not exist" if missing is BucketNotFound else f"{key}: not found"
        raise missing(f"{url}: {what}") from e
    except FileExistsError as e:
        raise ObjectExists(f"{at(url, key)}: already exists") from e
    except GoogleAuthError as e:
        raise AccessDenied(f"{url}: no usable Google credentials: give token= (see GCSOptions.token) or set "
                           f"GOOGLE_APPLICATION_CREDENTIALS ({type(e).__name__})") from e
    except HttpError as e:
        if e.code == 401:
            raise CredentialsRefused(f"{url}: credentials refused (401: the token is not valid or has expired)") from e
        if e.code == 403:
            raise AccessDenied(f"{at(url, key)}: access denied ({e.code})") from e
        raise StoreError(f"{at(url, key)}: HTTP {e.code}: {e.message}") from e
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as e:
        raise Unreachable(f"{at(url, key)}: endpoint unreachable ({type(e).__name__})") from e
    except OSError as e:
        if str(e).startswith("Forbidden"):
            raise AccessDenied(f"{at(url, key)}: access denied") from e
        raise StoreError(f"{at(url, key)}: {type(e).__name__}") from e
    except ValueError as e:
        raise StoreError(f"{at(url, key)}: {str(e).splitlines()[0]}") from e
