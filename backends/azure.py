"""Azure Blob Storage (and Azurite) through adlfs's async service client.

Quirks handled here and nowhere else:
- Metadata names must be C# identifiers: real Azure answers 400 to `asset-root`, Azurite accepts
  it (Azure/Azurite#532), so we map names ourselves instead of trusting the emulator. fscas's
  metadata grammar is `[a-z][a-z0-9-]*`, on which '-' <-> '_' is a bijection: `asset-root` is
  stored as `asset_root` and every fscas reader maps it back.
- adlfs `put_file` drops user metadata (fsspec/adlfs#143): we call the blob client directly.
- A streamed object is staged as blocks and only becomes visible when the block list is
  committed, after the stream ended cleanly; uncommitted blocks expire on the server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import attrs

from fscas.backends.base import Body, Capabilities, ObjectInfo, check_metadata, chunks_of, read_part
from fscas.backends.url import Location, build_options
from fscas.errors import (
    AccessDenied,
    BucketNotFound,
    ObjectExists,
    ObjectNotFound,
    StoreError,
    Unreachable,
)

__all__ = ["AzureBackend", "AzureOptions", "name_from_wire", "name_to_wire"]


@attrs.frozen(kw_only=True)
class AzureOptions:
    """Options of an `az://container/prefix` store. Unset values come from adlfs's environment."""

    account_name: str | None = None
    """Env: AZURE_STORAGE_ACCOUNT_NAME."""
    connection_string: str | None = attrs.field(default=None, repr=False)
    """Env: AZURE_STORAGE_CONNECTION_STRING. Never printed."""
    account_key: str | None = attrs.field(default=None, repr=False)
    """Env: AZURE_STORAGE_ACCOUNT_KEY. Never printed."""
    sas_token: str | None = attrs.field(default=None, repr=False)
    """Env: AZURE_STORAGE_SAS_TOKEN. Never printed."""
    anon: bool | None = None
    """Anonymous access. Env: AZURE_STORAGE_ANON."""
    part_size: int = 16 * 2**20
    """Block size for streamed objects; shorter streams go as one Put Blob."""
    part_concurrency: int = 4
    """Blocks of one object in flight at once."""


def name_to_wire(name: str) -> str:
    """`asset-root` -> `asset_root`: a C# identifier for a name in fscas's metadata grammar."""
    return name.replace("-", "_")


def name_from_wire(name: str) -> str:
    """`asset_root` -> `asset-root`: the inverse of `name_to_wire` (Azure keeps the case we sent)."""
    return name.lower().replace("_", "-")


class AzureBackend:
    """One container (and blob-name prefix) on Azure Blob Storage or Azurite."""

    capabilities = Capabilities(create_only=True, metadata_names="identifier", integrity=frozenset({"md5"}))

    def __init__(self, container: str, prefix: str = "", options: AzureOptions | None = None) -> None:
        self.container, self.prefix = container, prefix
        self.options = options or AzureOptions()
        self.account = self.options.account_name or _account_from_env(self.options.connection_string)
        self.url = f"az://{container}/{prefix}".rstrip("/") + (f"?account_name={self.account}" if self.account else "")
        self._fs: Any = None

    @classmethod
    def from_location(cls, location: Location, options: Mapping[str, object]) -> AzureBackend:
        return cls(location.bucket, location.prefix, build_options(AzureOptions, location.bucket,
                                                                   location.options, options))

    def __repr__(self) -> str:
        return f"AzureBackend({self.url!r})"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _service(self) -> Any:
        if self._fs is None:
            from adlfs import AzureBlobFileSystem

            o = self.options
            with _translated(self.url, ""):
                self._fs = AzureBlobFileSystem(
                    asynchronous=True, skip_instance_cache=True, account_name=o.account_name,
                    connection_string=o.connection_string, account_key=o.account_key, sas_token=o.sas_token,
                    anon=o.anon)
        return self._fs.service_client

    def _blob(self, key: str) -> Any:
        return self._service().get_blob_client(self.container, self._key(key))

    async def head(self, key: str) -> ObjectInfo:
        with _translated(self.url, key):
            p = await self._blob(key).get_blob_properties()
        return _info(key, p, p.size, {name_from_wire(k): v for k, v in (p.metadata or {}).items()})

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        if end is not None and end <= start:
            return b""
        length = None if end is None else end - start
        with _translated(self.url, key):
            stream = await self._blob(key).download_blob(  # offset 0 without a length is a 416 on an empty blob
                offset=start if start or length is not None else None, length=length)
            data: bytes = await stream.readall()
        return data

    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        meta = check_metadata(metadata, key)
        wire = {name_to_wire(k): v for k, v in meta.items()}
        blob = self._blob(key)
        chunks = chunks_of(data)
        first = await read_part(chunks, self.options.part_size)
        with _translated(self.url, key, missing=BucketNotFound):
            if len(first) < self.options.part_size:
                r = await blob.upload_blob(first, overwrite=not if_absent, metadata=wire)
                return _info(key, r, len(first), meta)
        slots = asyncio.Semaphore(self.options.part_concurrency)
        blocks: list[str] = []

        async def stage(block_id: str, body: bytes) -> None:
            try:
                with _translated(self.url, key, missing=BucketNotFound):
                    await blob.stage_block(block_id, body)
            finally:
                slots.release()

        tasks: set[asyncio.Task[None]] = set()
        size, part = 0, first
        try:
            while part:
                await slots.acquire()
                blocks.append(base64.b64encode(uuid.uuid4().bytes).decode())
                tasks.add(asyncio.create_task(stage(blocks[-1], part)))
                size += len(part)
                part = await read_part(chunks, self.options.part_size)
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise  # staged blocks are never committed; the server drops them
        cond = {"if_none_match": "*"} if if_absent else {}
        with _translated(self.url, key, missing=BucketNotFound):
            r = await blob.commit_block_list(blocks, metadata=wire, **cond)
        return _info(key, r, size, meta)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        strip = len(self._key(""))
        container = self._service().get_container_client(self.container)
        with _translated(self.url, prefix):
            async for p in container.list_blobs(name_starts_with=self._key(prefix)):
                yield _info(p.name[strip:], p, p.size, {})

    async def delete(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound), _translated(self.url, key):
            await self._blob(key).delete_blob()

    async def aclose(self) -> None:
        fs, self._fs = self._fs, None
        if fs is not None:
            await fs.service_client.close()
            # adlfs registers finalizers that close the client again through fsspec's sync loop,
            # which at interpreter exit is gone ("Loop is not running"): we closed it already.
            for finalizer in list(weakref.finalize._registry):  # type: ignore[attr-defined]
                if (peek := finalizer.peek()) is not None and peek[0] is fs:
                    finalizer.detach()



def _account_from_env(connection_string: str | None) -> str | None:
    cs = connection_string or os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
    fields = dict(p.split("=", 1) for p in cs.split(";") if "=" in p)
    return fields.get("AccountName") or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")


def _info(key: str, p: Any, size: int, metadata: Mapping[str, str]) -> ObjectInfo:
    def get(name: str) -> Any:  # upload/commit answer dicts; properties and listings answer objects
        return p.get(name) if isinstance(p, Mapping) else getattr(p, name, None)

    settings = get("content_settings")
    md5 = get("content_md5") or (settings.content_md5 if settings is not None else None)
    modified = get("last_modified")
    return ObjectInfo(key=key, size=size, metadata=metadata, etag=get("etag"), version_id=get("version_id"),
                      checksums={"md5": bytes(md5).hex()} if md5 else {},
                      last_modified=modified.timestamp() if modified else None)


@contextlib.contextmanager
def _translated(url: str, key: str, missing: type[ObjectNotFound] = ObjectNotFound) -> Iterator[None]:
    """Map azure-core errors to fscas errors naming the URL and key, never a credential."""
    from azure.core import exceptions as ax

    try:
        yield
    except StoreError:
        raise
    except ax.ResourceNotFoundError as e:
        if getattr(e, "error_code", None) == "ContainerNotFound" or missing is BucketNotFound:
            raise BucketNotFound(f"{url}: container does not exist") from e
        raise ObjectNotFound(f"{url}: {key}: not found") from e
    except (ax.ResourceExistsError, ax.ResourceModifiedError) as e:
        raise ObjectExists(f"{url}: {key}: already exists") from e
    except ax.ClientAuthenticationError as e:
        code = getattr(e, "error_code", None) or e.status_code
        raise AccessDenied(f"{url}: {key}: access denied ({code})") from e
    except (ax.ServiceRequestError, ax.ServiceResponseError, ConnectionError) as e:
        raise Unreachable(f"{url}: {key}: endpoint unreachable ({type(e).__name__})") from e
    except ax.HttpResponseError as e:
        if e.status_code == 403:
            raise AccessDenied(f"{url}: {key}: access denied") from e
        code = getattr(e, "error_code", None) or ""
        raise StoreError(f"{url}: {key}: HTTP {e.status_code} {code}".rstrip()) from e
    except ValueError as e:  # adlfs/azure-core: a malformed connection string or account
        raise StoreError(f"{url}: invalid Azure configuration ({type(e).__name__})") from e
    except ax.AzureError as e:  # the rest of azure-core's errors
        raise StoreError(f"{url}: {key}: {type(e).__name__}") from e
