"""gcsfs's side of the GCS backend, and what both paths share: our retry policy in place of gcsfs's,
an object resource as `ObjectInfo`, and gcsfs's, aiohttp's and google-auth's errors as fscas's."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from fscas.backends.base import ObjectInfo, at, retry_pause
from fscas.backends.resend import ATTEMPTS, RETRY_STATUS
from fscas.errors import (
    AccessDenied,
    BucketNotFound,
    CredentialsRefused,
    ObjectExists,
    ObjectNotFound,
    StoreError,
    Unreachable,
)

__all__ = ["b64hex", "info", "json_or_none", "retried", "translated"]

_RETRY_STATUS = RETRY_STATUS | {408}  # GCS's JSON API also answers 408 to a request it gave up on


def retried(request: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
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


def json_or_none(body: bytes | str | None) -> Any:
    return json.loads(body) if body else None


def b64hex(value: str | None) -> str | None:
    return base64.b64decode(value).hex() if value else None


def info(key: str, r: Mapping[str, Any]) -> ObjectInfo:
    checksums = {name: h for name, field in (("md5", "md5Hash"), ("crc32c", "crc32c"))
                 if (h := b64hex(r.get(field)))}
    updated = r.get("updated")
    return ObjectInfo(key=key, size=int(r["size"]), metadata=r.get("metadata") or {}, etag=r.get("etag"),
                      version_id=str(r["generation"]) if r.get("generation") else None, checksums=checksums,
                      last_modified=datetime.fromisoformat(updated.replace("Z", "+00:00")).timestamp()
                      if updated else None)


@contextlib.contextmanager
def translated(url: str, key: str, missing: type[ObjectNotFound] = ObjectNotFound) -> Iterator[None]:
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
