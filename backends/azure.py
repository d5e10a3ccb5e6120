"""Azure Blob Storage (and Azurite) through azure-storage-blob's async client (installed with adlfs).

Quirks handled here and nowhere else:
- Metadata names must be C# identifiers: real Azure answers 400 to `asset-root`, Azurite accepts
  it (Azure/Azurite#532), so we map names ourselves instead of trusting the emulator. fscas's
  metadata grammar is `[a-z][a-z0-9-]*`, on which '-' <-> '_' is a bijection: `asset-root` is
  stored as `asset_root` and every fscas reader maps it back.
- adlfs `put_file` drops user metadata (fsspec/adlfs#143), and adlfs builds its client with the
  SDK's default retry policy (15 s, then 18 s, 24 s...: over a minute before an unreachable
  endpoint is reported): we build the blob service client ourselves, with a short policy.
- With an account name and no credential, the SDK's credential chain (environment, managed
  identity, Azure CLI) is asked once, up front, so "no credential" is one clear error.
- A streamed object is staged as blocks and only becomes visible when the block list is
  committed, after the stream ended cleanly; uncommitted blocks expire on the server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import attrs

from fscas.backends.base import Body, Capabilities, ObjectInfo, at, check_metadata, check_send_by, chunks_of, read_part
from fscas.backends.url import Location, build_options
from fscas.errors import (
    AccessDenied,
    BucketNotFound,
    ConfigError,
    CredentialsRefused,
    ObjectExists,
    ObjectNotFound,
    StoreError,
    Unreachable,
    redact,
)

__all__ = ["AzureBackend", "AzureOptions", "name_from_wire", "name_to_wire"]


@attrs.frozen(kw_only=True)
class AzureOptions:
    """Options of an `az://container/prefix` store. Unset values come from the environment adlfs uses."""

    account_name: str | None = None
    """Env: AZURE_STORAGE_ACCOUNT_NAME."""
    endpoint_url: str | None = None
    """Blob service endpoint (Azurite, a sovereign cloud); default `https://<account>.blob.core.windows.net`."""
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
        fields = _connection_fields(self.options.connection_string)
        self.account = self.options.account_name or fields.get("AccountName") or os.environ.get(
            "AZURE_STORAGE_ACCOUNT_NAME")
        # The store identity: an endpoint of its own (Azurite, a connection string's) is part of it.
        self.endpoint = redact(self.options.endpoint_url or fields.get("BlobEndpoint") or "") or None
        query = urllib.parse.urlencode({k: v for k, v in (("account_name", self.account),
                                                          ("endpoint_url", self.endpoint)) if v}, safe=":/")
        self.url = f"az://{container}/{prefix}".rstrip("/") + (f"?{query}" if query else "")
        self._client: Any = None
        self._chain: Any = None  # DefaultAzureCredential, when no explicit credential is configured

    @classmethod
    def from_location(cls, location: Location, options: Mapping[str, object]) -> AzureBackend:
        return cls(location.bucket, location.prefix, build_options(AzureOptions, location, options))

    def __repr__(self) -> str:
        return f"AzureBackend({self.url!r})"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _service(self) -> Any:
        if self._client is None:
            from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry

            o, kind = self.options, self._credentials()
            # Transient answers are retried a few times within seconds; a dead endpoint fails in ~2 s.
            retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=4, retry_connect=1)
            url = o.endpoint_url or f"https://{self.account}.blob.core.windows.net"
            with _translated(self.url, ""):
                if kind == "connection_string":
                    cs = o.connection_string or os.environ["AZURE_STORAGE_CONNECTION_STRING"]
                    self._client = BlobServiceClient.from_connection_string(cs, retry_policy=retry)
                elif kind == "account_key":
                    credential = {"account_name": self.account or "", "account_key": self._account_key() or ""}
                    self._client = BlobServiceClient(url, credential=credential, retry_policy=retry)
                elif kind == "sas_token":
                    sas = (o.sas_token or os.environ["AZURE_STORAGE_SAS_TOKEN"]).lstrip("?")
                    self._client = BlobServiceClient(f"{url}?{sas}", retry_policy=retry)
                elif kind == "anon":
                    self._client = BlobServiceClient(url, retry_policy=retry)
                else:
                    from azure.identity.aio import DefaultAzureCredential

                    self._chain = DefaultAzureCredential()
                    self._client = BlobServiceClient(url, credential=self._chain, retry_policy=retry)
        return self._client

    def _credentials(self) -> str:
        """Which credential the client will use; a configuration that cannot work is refused here.

        Raises:
            ConfigError: no account at all, or an account key that is not base64.
        """
        o, env = self.options, os.environ
        connection_string = o.connection_string or env.get("AZURE_STORAGE_CONNECTION_STRING")
        key = self._account_key()
        if connection_string:
            key = _connection_fields(connection_string).get("AccountKey")
        if key is not None:
            try:
                base64.b64decode(key, validate=True)
            except ValueError:
                raise ConfigError(f"{self.url}: the account key is not base64 (an Azure storage key is "
                                  "88 base64 characters)") from None
        if connection_string:
            return "connection_string"
        if not self.account:
            raise ConfigError(f"{self.url}: no Azure storage account: give account_name (env "
                              "AZURE_STORAGE_ACCOUNT_NAME) with account_key, sas_token or anon=true, or a "
                              "connection_string (env AZURE_STORAGE_CONNECTION_STRING)")
        if key:
            return "account_key"
        if o.sas_token or env.get("AZURE_STORAGE_SAS_TOKEN"):
            return "sas_token"
        if o.anon or env.get("AZURE_STORAGE_ANON", "").lower() in ("1", "true"):
            return "anon"
        return "chain"

    def _account_key(self) -> str | None:
        env = os.environ
        return self.options.account_key or env.get("AZURE_STORAGE_ACCOUNT_KEY") or env.get("AZURE_STORAGE_KEY")

    async def _ready(self) -> None:
        """Connect once; with the SDK's credential chain, fail at once when it finds no credential
        (the blob client would retry that for over a minute)."""
        if self._client is not None:
            return
        self._service()
        if self._chain is not None:
            from azure.core.exceptions import ClientAuthenticationError

            try:
                await self._chain.get_token("https://storage.azure.com/.default")
            except ClientAuthenticationError as e:
                raise AccessDenied(f"{self.url}: no usable Azure credentials: account_name is set, but the SDK's "
                                   "chain (environment, managed identity, Azure CLI) found none; give "
                                   "account_key, sas_token, a connection_string or anon=true") from e

    def _blob(self, key: str) -> Any:
        return self._service().get_blob_client(self.container, self._key(key))

    async def head(self, key: str) -> ObjectInfo:
        await self._ready()
        with _translated(self.url, key):
            p = await self._blob(key).get_blob_properties()
        return _info(key, p, p.size, {name_from_wire(k): v for k, v in (p.metadata or {}).items()})

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        await self._ready()
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
        await self._ready()
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

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        await self._ready()
        with _translated(self.url, key):
            stream = await self._blob(key).download_blob()
            data: bytes = await stream.readall()
        return data, str(stream.properties.etag)

    async def put_tagged(self, key: str, data: bytes, *, tag: str | None) -> str:
        # If-Match / If-None-Match: *; Azure and Azurite both refuse a stale ETag (412 ConditionNotMet).
        from azure.core import MatchConditions

        await self._ready()
        condition = {"etag": tag, "match_condition": MatchConditions.IfNotModified} if tag is not None else {}
        try:
            with _translated(self.url, key):
                r = await self._blob(key).upload_blob(data, overwrite=tag is not None, **condition)
        except ObjectNotFound as e:  # the blob, not the container (BucketNotFound), is gone
            if isinstance(e, BucketNotFound):
                raise
            raise ObjectExists(f"{at(self.url, key)}: changed since it was read (now absent)") from e
        return str(r["etag"])

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        await self._ready()
        strip = len(self._key(""))
        container = self._service().get_container_client(self.container)
        with _translated(self.url, prefix):
            async for p in container.list_blobs(name_starts_with=self._key(prefix)):
                yield _info(p.name[strip:], p, p.size, {})

    async def delete(self, key: str) -> None:
        await self._ready()
        check_send_by(self.url, key)
        with contextlib.suppress(ObjectNotFound), _translated(self.url, key):
            await self._blob(key).delete_blob()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
        chain, self._chain = self._chain, None
        if chain is not None:
            await chain.close()


def _connection_fields(connection_string: str | None) -> dict[str, str]:
    """The fields of a connection string (the option's, else AZURE_STORAGE_CONNECTION_STRING's)."""
    cs = connection_string or os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
    return dict(p.split("=", 1) for p in cs.split(";") if "=" in p)


def _info(key: str, p: Any, size: int, metadata: Mapping[str, str]) -> ObjectInfo:
    def get(name: str) -> Any:  # upload/commit answer dicts; properties and listings answer objects
        return p.get(name) if isinstance(p, Mapping) else getattr(p, name, None)

    settings = get("content_settings")
    md5 = get("content_md5") or (settings.content_md5 if settings is not None else None)
    modified = get("last_modified")
    return ObjectInfo(key=key, size=size, metadata=metadata, etag=get("etag"), version_id=get("version_id"),
                      checksums={"md5": bytes(md5).hex()} if md5 else {},
                      last_modified=modified.timestamp() if modified else None)


def _denied(url: str, key: str, code: object) -> AccessDenied:
    """The key or token itself refused (or not even usable to sign), or a permission refused."""
    if code in (None, "AuthenticationFailed", "InvalidAuthenticationInfo", 401):
        return CredentialsRefused(f"{url}: credentials refused ({code or 'the request could not be signed'})")
    return AccessDenied(f"{at(url, key)}: access denied ({code})")


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
        raise ObjectNotFound(f"{at(url, key)}: not found") from e
    except (ax.ResourceExistsError, ax.ResourceModifiedError) as e:
        raise ObjectExists(f"{at(url, key)}: already exists") from e
    except ax.ClientAuthenticationError as e:
        raise _denied(url, key, getattr(e, "error_code", None) or e.status_code) from e
    except (ax.ServiceRequestError, ax.ServiceResponseError, ConnectionError) as e:
        raise Unreachable(f"{at(url, key)}: endpoint unreachable ({type(e).__name__})") from e
    except ax.HttpResponseError as e:
        if e.status_code in (401, 403):
            code = getattr(e, "error_code", None) or e.status_code
            # Azurite answers a wrong key with AuthorizationFailure and Azure's AuthenticationFailed text.
            if code == "AuthorizationFailure" and str(e.message).startswith("Server failed to authenticate"):
                code = "AuthenticationFailed"
            raise _denied(url, key, code) from e
        code = getattr(e, "error_code", None) or ""
        raise StoreError(f"{at(url, key)}: HTTP {e.status_code} {code}".rstrip()) from e
    except ValueError as e:  # azure-core: a malformed connection string or account URL
        raise ConfigError(f"{url}: invalid Azure configuration: {redact(str(e)).splitlines()[0]}") from e
    except ax.AzureError as e:  # the rest of azure-core's errors
        raise StoreError(f"{at(url, key)}: {type(e).__name__}") from e
