"""What goes over the wire to Azure Blob Storage and back: metadata names, answers as `ObjectInfo`,
and every failure (the SDK's exceptions, the fast path's status codes) as the one fscas error.

Metadata names must be C# identifiers: real Azure answers 400 to `asset-root`, Azurite accepts it
(Azure/Azurite#532), so names are mapped here instead of trusting the emulator. fscas's metadata
grammar is `[a-z][a-z0-9-]*`, on which '-' <-> '_' is a bijection: `asset-root` is stored as
`asset_root` and every fscas reader maps it back.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from fscas.backends.base import ObjectInfo, at
from fscas.backends.http11 import AnswerRefused
from fscas.backends.resend import redirected, trusting_connector, unreachable
from fscas.errors import (
    AccessDenied,
    BucketNotFound,
    ConfigError,
    CredentialsRefused,
    ObjectExists,
    ObjectNotFound,
    StoreError,
    redact,
)

__all__ = ["chunks", "info", "info_from_headers", "name_from_wire", "name_to_wire", "status_error", "translated",
           "transport_trusting"]


def name_to_wire(name: str) -> str:
    """`asset-root` -> `asset_root`: a C# identifier for a name in fscas's metadata grammar."""
    return name.replace("-", "_")


def name_from_wire(name: str) -> str:
    """`asset_root` -> `asset-root`: the inverse of `name_to_wire` (Azure keeps the case we sent)."""
    return name.lower().replace("_", "-")


def info(key: str, p: Any, size: int, metadata: Mapping[str, str]) -> ObjectInfo:
    def get(name: str) -> Any:  # upload/commit answer dicts; properties and listings answer objects
        return p.get(name) if isinstance(p, Mapping) else getattr(p, name, None)

    settings = get("content_settings")
    md5 = get("content_md5") or (settings.content_md5 if settings is not None else None)
    modified = get("last_modified")
    return ObjectInfo(key=key, size=size, metadata=metadata, etag=get("etag"), version_id=get("version_id"),
                      checksums={"md5": bytes(md5).hex()} if md5 else {},
                      last_modified=modified.timestamp() if modified else None)


def info_from_headers(key: str, headers: Mapping[str, str], *, size: int | None = None,
                       metadata: Mapping[str, str] | None = None) -> ObjectInfo:
    """A fast-path answer's headers as an `ObjectInfo` (a HEAD's carries the size and metadata)."""
    md5 = headers.get("content-md5")
    modified = headers.get("last-modified")
    if metadata is None:
        metadata = {name_from_wire(k[10:]): v for k, v in headers.items() if k.startswith("x-ms-meta-")}
    return ObjectInfo(key=key, size=int(headers.get("content-length", 0)) if size is None else size, metadata=metadata,
                      etag=headers.get("etag"), version_id=headers.get("x-ms-version-id"),
                      checksums={"md5": base64.b64decode(md5).hex()} if md5 else {},
                      last_modified=parsedate_to_datetime(modified).timestamp() if modified else None)


def status_error(url: str, key: str, status: int, headers: Mapping[str, str], body: bytes,
                  missing: type[ObjectNotFound] = ObjectNotFound) -> StoreError:
    """A fast-path answer of `status` as the fscas error `_translated` gives for the SDK's."""
    code = headers.get("x-ms-error-code") or _xml_field(body, "Code")
    if 300 <= status < 400:
        return redirected(url, key, status, headers.get("location", ""))
    if status == 404:
        if code == "ContainerNotFound" or missing is BucketNotFound:
            return BucketNotFound(f"{url}: container does not exist")
        return ObjectNotFound(f"{at(url, key)}: not found")
    if status in (409, 412) and code in ("BlobAlreadyExists", "ConditionNotMet"):
        return ObjectExists(f"{at(url, key)}: already exists")
    if status in (401, 403):
        # Azurite answers a wrong key with AuthorizationFailure and Azure's AuthenticationFailed text.
        if code == "AuthorizationFailure" and _xml_field(body, "Message").startswith("Server failed to authenticate"):
            code = "AuthenticationFailed"
        return _denied(url, key, code or status)
    return StoreError(f"{at(url, key)}: HTTP {status} {code}".rstrip())


def _xml_field(body: bytes, name: str) -> str:
    start = body.find(f"<{name}>".encode())
    end = body.find(f"</{name}>".encode(), start)
    return body[start + len(name) + 2:end].decode("utf-8", "replace") if start >= 0 and end > start else ""


async def chunks(url: str, key: str, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A body's chunks, a connection that breaks off mid-body raised as the fscas error."""
    with translated(url, key):
        async for chunk in body:
            yield chunk


def _denied(url: str, key: str, code: object) -> AccessDenied:
    """The key or token itself refused (or not even usable to sign), or a permission refused."""
    if code in (None, "AuthenticationFailed", "InvalidAuthenticationInfo", 401):
        return CredentialsRefused(f"{url}: credentials refused ({code or 'the request could not be signed'})")
    return AccessDenied(f"{at(url, key)}: access denied ({code})")


@contextlib.contextmanager
def translated(url: str, key: str, missing: type[ObjectNotFound] = ObjectNotFound) -> Iterator[None]:
    """Map azure-core errors to fscas errors naming the URL and key, never a credential."""
    try:
        yield
    except StoreError:
        raise
    except AnswerRefused as e:  # the fast path's limits: a clean error, not a reason to try again
        raise StoreError(f"{at(url, key)}: {e}") from e
    except (ConnectionError, TimeoutError) as e:
        raise unreachable(url, key, e) from e
    except Exception as e:
        mapped = _sdk_error(url, key, e, missing)
        if mapped is None:
            raise
        raise mapped from e


def _sdk_error(url: str, key: str, e: Exception, missing: type[ObjectNotFound]) -> Exception | None:
    """The fscas error for an SDK's (or a malformed configuration's) exception; None: not one.
    azure-core is imported only here: the fast path may never load it."""
    if isinstance(e, ValueError):  # azure-core: a malformed connection string or account URL
        return ConfigError(f"{url}: invalid Azure configuration: {redact(str(e)).splitlines()[0]}")
    from azure.core import exceptions as ax

    if isinstance(e, ax.ResourceNotFoundError):
        if getattr(e, "error_code", None) == "ContainerNotFound" or missing is BucketNotFound:
            return BucketNotFound(f"{url}: container does not exist")
        return ObjectNotFound(f"{at(url, key)}: not found")
    if isinstance(e, (ax.ResourceExistsError, ax.ResourceModifiedError)):
        return ObjectExists(f"{at(url, key)}: already exists")
    if isinstance(e, ax.ClientAuthenticationError):
        return _denied(url, key, getattr(e, "error_code", None) or e.status_code)
    if isinstance(e, (ax.ServiceRequestError, ax.ServiceResponseError)):
        return unreachable(url, key, e)
    if isinstance(e, ax.HttpResponseError):
        error = getattr(e, "error_code", None)
        if e.status_code in (401, 403):
            # Azurite answers a wrong key with AuthorizationFailure and Azure's AuthenticationFailed text.
            if error == "AuthorizationFailure" and str(e.message).startswith("Server failed to authenticate"):
                error = "AuthenticationFailed"
            return _denied(url, key, error or e.status_code)
        return StoreError(f"{at(url, key)}: HTTP {e.status_code} {error or ''}".rstrip())
    if isinstance(e, ax.AzureError):  # the rest of azure-core's errors
        return StoreError(f"{at(url, key)}: {type(e).__name__}")
    return None


def transport_trusting(ca_bundle: str, connect_timeout: float, read_timeout: float) -> Any:
    """azure-core's aiohttp transport over a session whose connector trusts `ca_bundle`. Not
    `connection_verify=ca_bundle`: azure-core would load that file into a new SSL context on every
    request (23 ms each, measured: 13x the time of a small PUT)."""
    import aiohttp
    from azure.core.pipeline.transport import AioHttpTransport

    session = aiohttp.ClientSession(connector=trusting_connector(ca_bundle), trust_env=True)  # env proxies too
    return AioHttpTransport(session=session, session_owner=True, connection_timeout=connect_timeout,
                            read_timeout=read_timeout)
