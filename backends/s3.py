"""AWS S3 and S3-compatible servers (MinIO, SeaweedFS, Ceph RGW, R2) through s3fs/aiobotocore.

Quirks handled here and nowhere else:
- s3fs `info()` omits user metadata and a miss costs HEAD + LIST: we call `head_object` directly.
- botocore >= 1.36 sends flexible-checksum headers that some S3-compatible servers reject or
  store (docs/reference/peers.md §8.3): with a custom endpoint we only send them when required.
- Custom endpoints (MinIO, SeaweedFS) need path-style addressing and a region; we default both.
- An empty multipart upload is MalformedXML (Deadline PR #165): small streams go as one PUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fscas.backends import resend
from fscas.backends.base import (
    Body,
    Capabilities,
    FileBody,
    ObjectInfo,
    Pages,
    at,
    check_metadata,
    check_send_by,
    chunks_of,
    read_part,
    stop_all,
    swap_is_honoured,
)
from fscas.backends.http11 import Streamed
from fscas.backends.s3_config import S3Options, chain_credentials, shared_config, static_credentials
from fscas.backends.s3_http import (
    UNSIGNED,
    Credentials,
    S3Http,
    parse_listing,
    signer_available,
)
from fscas.backends.s3_wire import chunks as checked_chunks
from fscas.backends.s3_wire import info, info_from_headers, raise_status, translated, unfollowing_session
from fscas.backends.url import Location, build_options
from fscas.errors import (
    AccessDenied,
    BucketNotFound,
    CredentialsRefused,
    NotSupported,
    ObjectExists,
    ObjectNotFound,
    StoreError,
    logger,
    redact,
)

__all__ = ["S3Backend", "S3Options"]

log = logger(__name__)
_MIN_PART = 5 * 2**20  # S3's smallest non-final multipart part
_PROBE = "fscas-probe"
"""Key (under the store's root) of the fast path's one-off probe of whether the server checks a signed
body hash (`S3Http.payload_hash_checked`); deleted right after."""




class S3Backend:
    """One bucket (and key prefix) on S3 or an S3-compatible server."""

    def __init__(self, bucket: str, prefix: str = "", options: S3Options | None = None) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.options = options or S3Options()
        self.endpoint = self.options.resolved_endpoint()
        where = f"?endpoint_url={redact(self.endpoint)}" if self.endpoint else ""
        self.url = f"s3://{bucket}/{prefix}".rstrip("/") + where
        # Single-part ETags are the content MD5 on AWS (without SSE-KMS) and on every
        # S3-compatible server we test; multipart ETags ("...-N") are not and are not reported.
        self.capabilities = Capabilities(create_only=True, integrity=frozenset({"md5"}))
        self._fs: Any = None
        self._http: S3Http | None = None
        self._http_decided = False
        self._opening = asyncio.Lock()  # one s3fs session and one fast client, however many first calls race
        self._parts = asyncio.Semaphore(max(1, self.options.part_concurrency))  # shared: bounds memory
        self._swaps: bool | None = None  # whether the server honours If-Match (probed on the first swap)

    @classmethod
    def from_location(cls, location: Location, options: Mapping[str, object]) -> S3Backend:
        return cls(location.bucket, location.prefix, build_options(S3Options, location, options))

    def __repr__(self) -> str:
        return f"S3Backend({self.url!r})"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def _call(self, method: str, key: str, **kwargs: Any) -> Any:
        if self._fs is None:
            async with self._opening:
                if self._fs is None:
                    self._fs = await self._connect()
        with translated(self.url, key):
            return await self._fs._call_s3(method, Bucket=self.bucket, **kwargs)

    async def _connect(self) -> Any:
        import s3fs

        o = self.options
        config: dict[str, Any] = {}
        region = self._aws_config[0]
        if self.endpoint:
            config["s3"] = {"addressing_style": o.addressing_style or "path"}
            config["request_checksum_calculation"] = "when_required"
            config["response_checksum_validation"] = "when_required"
        elif o.addressing_style:
            config["s3"] = {"addressing_style": o.addressing_style}
        config.update(connect_timeout=o.connect_timeout, read_timeout=o.read_timeout,
                      http_session_cls=unfollowing_session())
        fs = s3fs.S3FileSystem(
            asynchronous=True, skip_instance_cache=True, anon=o.anon, key=o.key, secret=o.secret,
            token=o.token, profile=o.profile, endpoint_url=self.endpoint, config_kwargs=config,
            client_kwargs={"region_name": region} if region else {}, use_listings_cache=False)
        with translated(self.url, ""):
            await fs.set_session()
        return fs

    @functools.cached_property
    def _aws_config(self) -> tuple[str | None, str | None, int]:
        """(region, ca_bundle, max_attempts) as botocore resolves them: the URL's options, the
        environment, then the profile's section of `~/.aws/config`. One answer for both paths, so the
        fast path and botocore sign for the same region; a custom endpoint with no region anywhere
        gets `us-east-1`."""
        region, ca_bundle, attempts, _ = self._shared_config
        return region, ca_bundle, attempts

    @functools.cached_property
    def _shared_config(self) -> tuple[str | None, str | None, int, str | None]:
        """`_aws_config`, and why the fast path must step aside (None: it honours everything set)."""
        return shared_config(self.options, self.url, self.endpoint)

    async def _fast_client(self) -> S3Http | None:
        """The fast path's client, made on first use; None where botocore must carry every request.

        Static credentials (options, or the environment's keys with no profile asked for) need no
        s3fs at all: a download from MinIO or SeaweedFS then never imports it (0.5-0.7 s of imports).
        Any other credential source is resolved by s3fs/aiobotocore's chain, refreshed as it expires.
        """
        if self._http_decided:
            return self._http
        async with self._opening:
            if self._http_decided:
                return self._http
            o = self.options
            aside = self._shared_config[3]
            if aside:  # botocore honours it; sending half the requests without it would be worse
                log.debug("%s: the fast path steps aside: %s", self.url, aside)
            if (self.endpoint and o.fast_path and not o.anon and not aside and signer_available()
                    and not resend.proxy_applies(self.endpoint)):
                static = static_credentials(o)
                if static is None:
                    if self._fs is None:
                        self._fs = await self._connect()
                    credentials = chain_credentials(self._fs)
                else:
                    async def credentials() -> Credentials:
                        return static
                region, ca_bundle, attempts = self._aws_config
                self._http = S3Http(self.endpoint, self.bucket, region or "us-east-1", credentials, ca_bundle=ca_bundle,
                                    attempts=attempts, connect_timeout=o.connect_timeout,
                                    read_timeout=o.read_timeout)
            self._http_decided = True
        return self._http

    async def _fast(self, method: str, key: str, *, body: bytes | Streamed = b"",
                    headers: Mapping[str, str] | None = None, payload_sha256: str | None = None,
                    limit: int | None = None) -> tuple[Mapping[str, str], bytes] | None:
        """The request through `S3Http` when it applies (None: use botocore)."""
        if (http := await self._fast_client()) is None:
            return None
        with translated(self.url, key):
            status, answer, data = await http.request(method, self._key(key), body=body, headers=headers,
                                                      payload_sha256=payload_sha256, limit=limit)
        if status >= 300:
            raise_status(self.url, key, status, data)
        return answer, data

    async def head(self, key: str) -> ObjectInfo:
        if (fast := await self._fast("HEAD", key)) is not None:
            return info_from_headers(key, fast[0])
        r = await self._call("head_object", key, Key=self._key(key), ChecksumMode="ENABLED")
        return info(key, r, r["ContentLength"])

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        if end is not None and end <= start:
            return b""
        kwargs = {"Range": f"bytes={start}-{'' if end is None else end - 1}"} if start or end is not None else {}
        limit = end - start if end is not None else None  # never read past what was asked
        if (fast := await self._fast("GET", key, headers=kwargs, limit=limit)) is not None:
            return fast[1]
        r = await self._call("get_object", key, Key=self._key(key), **kwargs)
        with translated(self.url, key):
            async with r["Body"] as body:
                data: bytes = await body.read()
        return data

    @contextlib.asynccontextmanager
    async def stream(self, key: str, *, start: int = 0) -> AsyncIterator[AsyncIterator[bytes]]:
        headers = {"Range": f"bytes={start}-"} if start else {}
        async with contextlib.AsyncExitStack() as stack:
            if (http := await self._fast_client()) is not None:
                with translated(self.url, key):
                    status, _, chunks = await stack.enter_async_context(http.streamed(self._key(key), headers=headers))
                    error = b"".join([c async for c in chunks]) if status >= 300 else b""
                if status >= 300:
                    raise_status(self.url, key, status, error)
            else:
                r = await self._call("get_object", key, Key=self._key(key), **{k: v for k, v in headers.items()})
                body = r["Body"]
                await stack.enter_async_context(body)  # what entering returns changed (aiobotocore 2.18: the response)
                chunks = body.iter_chunks(1 << 20)
            # Outside `_translated`: an error of the caller's own (a full disk) must not become a StoreError.
            yield checked_chunks(self.url, key, chunks)

    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        try:
            return await self._put(key, data, metadata, if_absent)
        except AccessDenied as e:
            # SeaweedFS (and some other servers) answer a write into a missing bucket with AccessDenied.
            if not isinstance(e, CredentialsRefused) and await self._bucket_is_missing():
                raise BucketNotFound(f"{self.url}: bucket does not exist") from e
            raise

    async def _bucket_is_missing(self) -> bool:
        try:
            await self._call("head_bucket", "")
        except ObjectNotFound:  # BucketNotFound included
            return True
        except StoreError:
            return False
        return False

    async def _put(self, key: str, data: Body, metadata: Mapping[str, str] | None, if_absent: bool) -> ObjectInfo:
        meta = check_metadata(metadata, key)
        cond = {"IfNoneMatch": "*"} if if_absent else {}
        headers = {**{f"x-amz-meta-{k}": v for k, v in meta.items()}, **({"If-None-Match": "*"} if if_absent else {})}
        if (isinstance(data, FileBody) and self.options.part_size <= data.size <= self.options.upload_cutoff
                and (done := await self._put_file(key, data, headers, meta)) is not None):
            return done
        chunks = chunks_of(data)
        first = await read_part(chunks, self.options.part_size)
        if len(first) < self.options.part_size:  # the whole stream fits one part
            if (fast := await self._fast("PUT", key, body=first, headers=headers)) is not None:
                return info_from_headers(key, fast[0], size=len(first), metadata=meta)
            r = await self._call("put_object", key, Key=self._key(key), Body=first, Metadata=meta, **cond)
            return info(key, r, len(first), meta)
        return await self._multipart(key, first, chunks, meta, cond)

    async def _put_file(self, key: str, data: FileBody, headers: Mapping[str, str], meta: dict[str, str]
                        ) -> ObjectInfo | None:
        """A large local file as one fast-path PUT (None: no fast path here, upload it otherwise)."""
        if (http := await self._fast_client()) is None:
            return None
        payload = UNSIGNED
        if await http.payload_hash_checked(self._key(_PROBE)):  # worth a reading of its own
            if not data.cheap_rereads:
                return None  # a second reading would fetch it again from where it comes from: multipart
            sha = hashlib.sha256()
            async for chunk in data.reread(counted=False):  # also checks the file against its manifest entry
                await asyncio.to_thread(sha.update, chunk)
            payload = sha.hexdigest()
        # Either way the sending reading checks the file against its manifest entry itself and holds
        # its last chunk back until it does: what the server stores is what was snapshotted.
        body = Streamed(data.size, data.reread)
        fast = await self._fast("PUT", key, body=body, headers=headers, payload_sha256=payload)
        assert fast is not None
        return info_from_headers(key, fast[0], size=data.size, metadata=meta)

    async def _multipart(self, key: str, first: bytes, chunks: AsyncIterator[bytes],
                         meta: dict[str, str], cond: dict[str, str]) -> ObjectInfo:
        part_size = max(self.options.part_size, _MIN_PART)
        mpu = await self._call("create_multipart_upload", key, Key=self._key(key), Metadata=meta)
        upload = {"Key": self._key(key), "UploadId": mpu["UploadId"]}
        slots = self._parts
        etags: dict[int, str] = {}

        async def send(number: int, body: bytes) -> None:
            r = await self._call("upload_part", key, PartNumber=number, Body=body, **upload)
            etags[number] = r["ETag"]

        tasks: set[asyncio.Task[None]] = set()
        size, part, number = 0, first, 1
        try:
            while part:
                await slots.acquire()
                task = asyncio.create_task(send(number, part))
                task.add_done_callback(lambda _: slots.release())  # also when cancelled before it ran
                tasks.add(task)
                size += len(part)
                number += 1
                part = await read_part(chunks, part_size)
            await asyncio.gather(*tasks)
            parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
            r = await self._call("complete_multipart_upload", key, MultipartUpload={"Parts": parts},
                                 **upload, **cond)
        except BaseException:
            await stop_all(tasks)
            with contextlib.suppress(StoreError):
                await self._call("abort_multipart_upload", key, **upload)
            raise
        return info(key, r, size, meta)

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        if (fast := await self._fast("GET", key)) is not None:
            return fast[1], fast[0].get("etag", "")
        r = await self._call("get_object", key, Key=self._key(key))
        with translated(self.url, key):
            async with r["Body"] as body:
                data: bytes = await body.read()
        return data, r.get("ETag", "")

    async def put_tagged(self, key: str, data: bytes, *, tag: str | None) -> str:
        if self._swaps is None:
            self._swaps = await swap_is_honoured(self._conditional_put, self.delete, f"{_PROBE}-swap")
        if not self._swaps:
            raise NotSupported(f"{self.url}: the server ignores If-Match (probed): no compare-and-swap")
        return await self._conditional_put(key, data, tag)

    async def _conditional_put(self, key: str, data: bytes, tag: str | None) -> str:
        """PUT `data` if the object's ETag is `tag` (`If-Match`), or if it is absent (`If-None-Match: *`);
        S3 added both in 2024, MinIO, SeaweedFS 4 and moto 5 honour them."""
        condition = {"If-Match": tag} if tag is not None else {"If-None-Match": "*"}
        try:
            if (fast := await self._fast("PUT", key, body=data, headers=condition)) is not None:
                return fast[0].get("etag", "")
            r = await self._call("put_object", key, Key=self._key(key), Body=data,
                                 **({"IfMatch": tag} if tag is not None else {"IfNoneMatch": "*"}))
        except ObjectNotFound as e:  # If-Match on a key that is gone: moto says NoSuchKey, AWS 404
            if isinstance(e, BucketNotFound):
                raise
            raise ObjectExists(f"{at(self.url, key)}: changed since it was read (now absent)") from e
        return str(r.get("ETag", ""))

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        full = self._key(prefix)
        strip = len(self._key(""))
        pages = Pages(self.url, prefix)
        if (http := await self._fast_client()) is not None:
            after: str | None = None  # the continuation token of the page before
            while True:
                with translated(self.url, prefix):
                    status, body = await http.list_page(full, after)
                if status >= 300:
                    raise_status(self.url, prefix, status, body)
                try:
                    items, after = parse_listing(body)
                except ValueError as e:
                    raise StoreError(f"{at(self.url, prefix)}: {e}") from None
                pages.check(after, items[0][0] if items else None, items[-1][0] if items else None)
                for key, size, etag, modified in items:
                    yield ObjectInfo(key=key[strip:], size=size, etag=etag, last_modified=modified)
                if after is None:
                    return
        token: dict[str, str] = {}
        while True:
            r = await self._call("list_objects_v2", prefix, Prefix=full, **token)
            contents = r.get("Contents", ())
            truncated = bool(r.get("IsTruncated"))
            pages.check(r.get("NextContinuationToken") if truncated else None,
                        contents[0]["Key"] if contents else None, contents[-1]["Key"] if contents else None)
            for item in contents:
                yield ObjectInfo(key=item["Key"][strip:], size=item["Size"], etag=item.get("ETag"),
                                 last_modified=item["LastModified"].timestamp())
            if not truncated:
                return
            token = {"ContinuationToken": r["NextContinuationToken"]}

    async def delete(self, key: str) -> None:
        if await self._fast("DELETE", key) is None:  # the fast path checks SEND_BY as the request leaves
            check_send_by(self.url, key)
            await self._call("delete_object", key, Key=self._key(key))

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._http_decided = False
        fs, self._fs = self._fs, None
        if fs is not None and getattr(fs, "_s3", None) is not None:
            await fs._s3.close()
