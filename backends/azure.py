"""Azure Blob Storage (and Azurite): azure-storage-blob's async client, single-blob requests on the
fast path (`azure_http`, which a key, a SAS token or anonymous access reach without loading the SDK:
`azure_auth`); names, answers and errors on the wire in `azure_wire`.

Quirks handled here and nowhere else:
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
import importlib.util
import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs

from fscas.backends import resend
from fscas.backends.azure_auth import BlobSas, SharedKey, connection_fields, resolve, service_url
from fscas.backends.azure_http import AzureHttp, fast_path_of, shared_key_policy
from fscas.backends.azure_wire import (
    chunks as checked_chunks,
)
from fscas.backends.azure_wire import (
    info,
    info_from_headers,
    name_from_wire,
    name_to_wire,
    status_error,
    translated,
    transport_trusting,
)
from fscas.backends.base import (
    Body,
    Capabilities,
    FileBody,
    ObjectInfo,
    at,
    check_metadata,
    check_send_by,
    chunks_of,
    read_part,
    stop_all,
)
from fscas.backends.http11 import Streamed
from fscas.backends.url import Location, build_options
from fscas.errors import AccessDenied, BucketNotFound, ObjectExists, ObjectNotFound, redact

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
    upload_cutoff: int = 200 * 2**20
    """On the fast path, a local file up to this size goes as one Put Blob even when larger than a
    block (S3's `upload_cutoff`): one request where staging takes one a block plus the commit."""
    part_concurrency: int = 4
    """Blocks of one object in flight at once."""
    fast_path: bool = True
    """Send single-blob GET/HEAD/PUT/DELETE over `http11` (`azure_http`), authorized by obstore's
    per-blob SAS or the SDK's own shared-key policy (`azure_auth`): azure-core's per-request CPU
    cost bounds small-object transfers. A token
    credential, a proxy for the endpoint (`HTTPS_PROXY`/`HTTP_PROXY` less `NO_PROXY`) or a missing
    httptools keep every request on the SDK."""
    connect_timeout: float = 20
    """Seconds to open a connection (azure-core's default)."""
    read_timeout: float = 60
    """Seconds of silence after which an answer is given up; on the fast path also the time after
    which an exchange must average `http11.Limits.min_rate`."""


class AzureBackend:
    """One container (and blob-name prefix) on Azure Blob Storage or Azurite."""

    capabilities = Capabilities(create_only=True, metadata_names="identifier", integrity=frozenset({"md5"}))

    def __init__(self, container: str, prefix: str = "", options: AzureOptions | None = None) -> None:
        self.container, self.prefix = container, prefix
        self.options = options or AzureOptions()
        fields = connection_fields(self.options.connection_string)
        self.account = self.options.account_name or fields.get("ACCOUNTNAME") or os.environ.get(
            "AZURE_STORAGE_ACCOUNT_NAME")
        # The store identity: an endpoint of its own (Azurite, a connection string's) is part of it.
        self.endpoint = redact(self.options.endpoint_url or fields.get("BLOBENDPOINT") or "") or None
        query = urllib.parse.urlencode({k: v for k, v in (("account_name", self.account),
                                                          ("endpoint_url", self.endpoint)) if v}, safe=":/")
        self.url = f"az://{container}/{prefix}".rstrip("/") + (f"?{query}" if query else "")
        self._client: Any = None
        self._chain: Any = None  # DefaultAzureCredential, when no explicit credential is configured
        self._http: AzureHttp | None = None
        self._http_decided = self._checked = False

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

            o, c = self.options, resolve(self.url, self.options, self.account)
            # Transient answers are retried a few times within seconds; a dead endpoint fails in ~2 s.
            retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=resend.ATTEMPTS - 1,
                                     retry_connect=1)
            common: dict[str, Any] = {"retry_policy": retry, "connection_timeout": o.connect_timeout,
                                      "read_timeout": o.read_timeout}
            if ca := resend.ca_bundle():  # azure-core's aiohttp transport reads no CA variable itself
                common["transport"] = transport_trusting(ca, o.connect_timeout, o.read_timeout)
            with translated(self.url, ""):
                if c.kind == "connection_string":
                    self._client = BlobServiceClient.from_connection_string(c.connection_string, **common)
                elif c.kind == "account_key":
                    credential = {"account_name": c.account or "", "account_key": c.key or ""}
                    self._client = BlobServiceClient(c.url, credential=credential, **common)
                elif c.kind == "sas_token":
                    self._client = BlobServiceClient(f"{c.url}?{c.sas}", **common)
                elif c.kind == "anon":
                    self._client = BlobServiceClient(c.url, **common)
                else:
                    from azure.identity.aio import DefaultAzureCredential

                    self._chain = DefaultAzureCredential()
                    self._client = BlobServiceClient(c.url, credential=self._chain, **common)
        return self._client

    def _fast_client(self) -> AzureHttp | None:
        """The fast path's client, made on first use; None where the SDK must carry every request.
        A key, a SAS token or anonymous access needs no SDK client (`azure_auth`); the SDK's
        credential chain does, and its token credential keeps the SDK path."""
        if not self._http_decided:
            o = self.options
            route = self._route() if o.fast_path and importlib.util.find_spec("httptools") is not None else None
            if route is not None and not resend.proxy_applies(route[0]):
                self._http = AzureHttp(route[0], self.container, route[1], sas=route[2],
                                       connect_timeout=o.connect_timeout, read_timeout=o.read_timeout,
                                       ca_bundle=resend.ca_bundle())
            self._http_decided = True
        return self._http

    def _route(self) -> tuple[str, SharedKey | None, BlobSas | None] | None:
        """(service URL, the SDK's shared-key policy, obstore's signer) of the fast path, or None."""
        c = resolve(self.url, self.options, self.account)
        if c.kind == "sas_token":
            return f"{c.url}?{c.sas}", None, None
        if c.kind == "anon":
            return c.url, None, None
        url = service_url(c.connection_string) if c.kind == "connection_string" else c.url
        account, key = c.account, c.key
        if url is None or account is None or key is None:  # the SDK's chain, or a form only the SDK reads
            found = fast_path_of(self._service())
            return None if found is None else (found[0], None if found[1] is None else SharedKey.held(found[1]), None)
        return url, SharedKey(lambda: shared_key_policy(account, key)), BlobSas.make(account, key, url, self.container)

    async def _fast(self, method: str, key: str, *, body: bytes | Streamed = b"",
                    headers: Mapping[str, str] | None = None, limit: int | None = None,
                    missing: type[ObjectNotFound] = ObjectNotFound, query: Mapping[str, str] | None = None
                    ) -> tuple[Mapping[str, str], bytes] | None:
        """The request through `AzureHttp` when it applies (None: use the SDK)."""
        if (http := self._fast_client()) is None:
            return None
        with translated(self.url, key):
            answer, data = await http.request(method, self._key(key), body=body, headers=headers, limit=limit,
                                              query=query)
        if answer.status >= 300:
            raise status_error(self.url, key, answer.status, answer.headers, data, missing)
        return answer.headers, data

    async def _ready(self) -> None:
        """Check the configuration once; with the SDK's credential chain, fail at once when it finds
        no credential (the blob client would retry that for over a minute)."""
        if self._checked:
            return
        if self._fast_client() is None:
            self._service()
        if self._chain is not None:
            from azure.core.exceptions import ClientAuthenticationError

            try:
                await self._chain.get_token("https://storage.azure.com/.default")
            except ClientAuthenticationError as e:
                raise AccessDenied(f"{self.url}: no usable Azure credentials: account_name is set, but the SDK's "
                                   "chain (environment, managed identity, Azure CLI) found none; give "
                                   "account_key, sas_token, a connection_string or anon=true") from e
        self._checked = True

    def _blob(self, key: str) -> Any:
        return self._service().get_blob_client(self.container, self._key(key))

    async def head(self, key: str) -> ObjectInfo:
        await self._ready()
        if (fast := await self._fast("HEAD", key, limit=0)) is not None:
            return info_from_headers(key, fast[0])
        with translated(self.url, key):
            p = await self._blob(key).get_blob_properties()
        return info(key, p, p.size, {name_from_wire(k): v for k, v in (p.metadata or {}).items()})

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        await self._ready()
        if end is not None and end <= start:
            return b""
        length = None if end is None else end - start
        if start or length is not None:
            ranged = {"x-ms-range": f"bytes={start}-{'' if end is None else end - 1}"}
        if (fast := await self._fast("GET", key, headers=ranged if start or length is not None else None,
                                     limit=length)) is not None:
            return fast[1]
        with translated(self.url, key):
            stream = await self._blob(key).download_blob(  # offset 0 without a length is a 416 on an empty blob
                offset=start if start or length is not None else None, length=length)
            data: bytes = await stream.readall()
        return data

    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        await self._ready()
        meta = check_metadata(metadata, key)
        wire = {name_to_wire(k): v for k, v in meta.items()}
        headers = {"x-ms-blob-type": "BlockBlob", **{f"x-ms-meta-{k}": v for k, v in wire.items()},
                   **({"If-None-Match": "*"} if if_absent else {})}
        if isinstance(data, FileBody) and data.size <= self.options.upload_cutoff and self._fast_client() is not None:
            # Its sending reading checks the file against its manifest entry and holds the last chunk
            # back until it does: what the server stores is what was snapshotted.
            body = Streamed(data.size, data.reread)
            fast = await self._fast("PUT", key, body=body, headers=headers, missing=BucketNotFound)
            assert fast is not None
            return info_from_headers(key, fast[0], size=data.size, metadata=meta)
        chunks = chunks_of(data)
        first = await read_part(chunks, self.options.part_size)
        if len(first) < self.options.part_size and (
                fast := await self._fast("PUT", key, body=first, headers=headers, missing=BucketNotFound)) is not None:
            return info_from_headers(key, fast[0], size=len(first), metadata=meta)
        blob = self._blob(key)  # made only here: an SDK blob client costs 0.1 ms of CPU per object
        with translated(self.url, key, missing=BucketNotFound):
            if len(first) < self.options.part_size:
                r = await blob.upload_blob(first, overwrite=not if_absent, metadata=wire)
                return info(key, r, len(first), meta)
        slots = asyncio.Semaphore(self.options.part_concurrency)
        blocks: list[str] = []
        ours = self._fast_client() is not None

        async def stage(block_id: str, body: bytes) -> None:
            try:
                if ours:
                    await self._fast("PUT", key, body=body, query={"comp": "block", "blockid": block_id},
                                     missing=BucketNotFound)
                    return
                with translated(self.url, key, missing=BucketNotFound):
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
            await stop_all(tasks)
            raise  # staged blocks are never committed; the server drops them
        if ours:  # Put Block List: the blocks in order, the metadata and condition on the commit
            listed = "".join(f"<Latest>{b}</Latest>" for b in blocks)
            xml = f'<?xml version="1.0" encoding="utf-8"?><BlockList>{listed}</BlockList>'.encode()
            committed = await self._fast("PUT", key, body=xml, query={"comp": "blocklist"},
                                         headers={k: v for k, v in headers.items() if k != "x-ms-blob-type"},
                                         missing=BucketNotFound)
            assert committed is not None
            return info_from_headers(key, committed[0], size=size, metadata=meta)
        cond = {"if_none_match": "*"} if if_absent else {}
        with translated(self.url, key, missing=BucketNotFound):
            r = await blob.commit_block_list(blocks, metadata=wire, **cond)
        return info(key, r, size, meta)

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        await self._ready()
        with translated(self.url, key):
            stream = await self._blob(key).download_blob()
            data: bytes = await stream.readall()
        return data, str(stream.properties.etag)

    async def put_tagged(self, key: str, data: bytes, *, tag: str | None) -> str:
        # If-Match / If-None-Match: *; Azure and Azurite both refuse a stale ETag (412 ConditionNotMet).
        from azure.core import MatchConditions

        await self._ready()
        condition = {"etag": tag, "match_condition": MatchConditions.IfNotModified} if tag is not None else {}
        try:
            with translated(self.url, key):
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
        with translated(self.url, prefix):
            async for p in container.list_blobs(name_starts_with=self._key(prefix)):
                yield info(p.name[strip:], p, p.size, {})

    @contextlib.asynccontextmanager
    async def stream(self, key: str, *, start: int = 0) -> AsyncIterator[AsyncIterator[bytes]]:
        """The blob's bytes from `start`, as they arrive: one GET (the caller resumes a broken one)."""
        await self._ready()
        async with contextlib.AsyncExitStack() as stack:
            if (http := self._fast_client()) is not None:
                with translated(self.url, key):
                    answer, chunks = await stack.enter_async_context(http.streamed(self._key(key), start=start))
                    error = b"".join([c async for c in chunks]) if answer.status >= 300 else b""
                if answer.status >= 300:
                    raise status_error(self.url, key, answer.status, answer.headers, error)
            else:
                with translated(self.url, key):
                    downloader = await self._blob(key).download_blob(offset=start or None)
                chunks = downloader.chunks()
            yield checked_chunks(self.url, key, chunks)  # outside `translated`: a full disk is the caller's error

    async def delete(self, key: str) -> None:
        await self._ready()
        with contextlib.suppress(ObjectNotFound):
            if await self._fast("DELETE", key) is not None:  # the fast path checks SEND_BY as the request leaves
                return
            check_send_by(self.url, key)
            with translated(self.url, key):
                await self._blob(key).delete_blob()

    async def aclose(self) -> None:
        http, self._http, self._http_decided, self._checked = self._http, None, False, False
        if http is not None:
            await http.close()
        client, self._client = self._client, None
        if client is not None:
            await client.close()
        chain, self._chain = self._chain, None
        if chain is not None:
            await chain.close()

