"""Any fsspec filesystem as a store: the generic backend.

Every protocol fsspec knows that fscas has no native backend for (`sftp://`, `ftp://`,
`webdav+https://`, `hdfs://`, `hf://`, ...) and every fsspec filesystem instance
(`open_store(fs, root=...)`) comes here; `backend="fsspec"` sends the native schemes here too.
Keys, layout and bytes are Deadline's, as on every backend.

Quirks handled here and nowhere else:
- fsspec has no exclusive create (`pipe_file(mode="create")` checks, then writes): `create_only` is
  declared off, and `put(if_absent=True)` only checks first.
- Only object stores keep object metadata: with s3fs it is x-amz-meta (where Deadline reads
  `asset-root`); everywhere else it is a sidecar object under `.fscas-meta/`, as on the file backend.
- Filesystems with real folders get every object under a temp name, renamed into place once whole:
  no reader sees half an object and a stream that raises leaves nothing. Object stores write in
  place and abort the upload (`discard`) instead.
- Async implementations keep living on the loop they were made on (fsspec's): their coroutines are
  scheduled there. Sync ones run on threads; ftplib is not thread safe, so an FTP store opened from
  a URL gets a small pool of connections, and a filesystem passed in gets one call at a time.
- WebDAV URLs (`webdav+https://`, `webdav+http://`, `davs://`, `dav://`) become webdav4's `base_url`,
  with the URL's user and password as `auth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from fscas.backends.base import Body, Capabilities, ObjectInfo, check_key, check_metadata, check_send_by, together
from fscas.backends.generic_errors import ftp_normalized, translated
from fscas.backends.generic_info import (
    INTEGRITY,
    WEBDAV,
    close_fs,
    identity_of,
    info_checksums,
    info_etag,
    info_mtime,
    made,
    protocol_of,
    typed_options,
    url_identity,
    webdav_options,
)
from fscas.backends.generic_pool import Pool
from fscas.backends.url import Location
from fscas.errors import ConfigError, NotSupported, ObjectExists, ObjectNotFound, StoreError

__all__ = ["FsspecBackend"]

_META = ".fscas-meta"
_TMP = ".fscas-tmp-"
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oci", "oss", "r2"}
_NOT_THREAD_SAFE = {"ftp"}
_POOL = 4  # connections of a non-thread-safe filesystem opened from a URL
_WEBDAV_UNSAFE = set("#?*;[%")  # webdav4 puts names into URLs unquoted and lists them through fsspec globs
_EXTRAS = {"sftp": "sftp", "ssh": "sftp", "webdav": "webdav"}
"""The fscas extra that brings a protocol's filesystem."""


class FsspecBackend:
    """A folder (or bucket prefix) on any fsspec filesystem, seen as keys and bytes."""

    def __init__(self, fs: Any, root: str, *, url: str | None = None,
                 make: Callable[[], Any] | None = None, pool: int = 1, protocol: str | None = None) -> None:
        self._fs, self._make, self._pool_size = fs, make, pool
        self.root = root.rstrip("/")
        self.protocol = protocol or protocol_of(fs)
        self.url = url or identity_of(fs, self.root)
        self._sync: Pool | None = None  # threads (and connections) for calls of the sync API
        self._folders: dict[str, asyncio.Future[None]] = {}  # made (or being made): one mkdir per folder
        self.capabilities = Capabilities(create_only=False, integrity=INTEGRITY.get(self.protocol, frozenset()),
                                         root="bucket" if self.protocol in _OBJECT_STORES else "folder")

    @classmethod
    def from_location(cls, location: Location, options: Mapping[str, object]) -> FsspecBackend:
        """The generic backend for a URL: the filesystem is made on first use, with `options` as storage options."""
        import fsspec
        from fsspec.core import split_protocol

        address, protocol = location.address, location.scheme
        storage = dict(typed_options(location.options)) | dict(options)
        if protocol in WEBDAV:  # webdav4 wants the server as base_url, and the user as auth
            address, storage = webdav_options(location, storage)
            protocol = "webdav"
        try:
            cls_ = fsspec.get_filesystem_class(protocol)
        except ImportError as e:  # fsspec's own SFTP wants paramiko: the extra brings sshfs instead
            extra = _EXTRAS.get(protocol)
            fix = f"pip install 'fscas[{extra}]'" if extra else "install the package fsspec names"
            raise ConfigError(f"{location.scheme}:// needs a package that is not installed: {fix} "
                              f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
        from_url = cls_._get_kwargs_from_urls(address)
        for name in ("username", "password"):  # fsspec leaves them percent-encoded, as they are in the URL
            if isinstance(from_url.get(name), str):
                from_url[name] = urllib.parse.unquote(from_url[name])
        storage = from_url | storage
        root = cls_._strip_protocol(address) if protocol != "webdav" else split_protocol(address)[1]
        if isinstance(root, list):
            root = root[0]
        if "password" in storage and "username" not in storage and "user" in storage:
            storage["username"] = storage.pop("user")

        def make() -> Any:
            return made(cls_(skip_instance_cache=True, **storage))

        pool = _POOL if protocol in _NOT_THREAD_SAFE else 1
        return cls(None, root, url=url_identity(location), make=make, pool=pool, protocol=protocol)

    def __repr__(self) -> str:
        return f"FsspecBackend({self.url!r})"

    def plain_filesystem(self) -> tuple[Any, str]:
        """A filesystem on the same server that fscas does not go through, and the store's root on it.

        A fresh one when the store made its own (from a URL), else the instance it was given: for
        ground-truth reads in tests and the conformance suite.
        """
        return (self._make() if self._make is not None else self._fs), self.root

    def path_of(self, key: str, *, sidecar: bool = False) -> str:
        """The path of `key` (or of its metadata sidecar) on the filesystem, as the filesystem takes it:
        for ground-truth reads."""
        self._path(key)  # the same checks
        return f"{self.root}/{_META}/{key}" if sidecar else f"{self.root}/{key}"

    @property
    def metadata_sidecars(self) -> bool:
        """True when object metadata lives in `.fscas-meta/<key>` sidecar objects (not on the object)."""
        return not self._native_metadata()

    def _path(self, key: str) -> str:
        check_key(key)
        if key.split("/", 1)[0] == _META or key.rsplit("/", 1)[-1].startswith(_TMP):
            raise StoreError(f"{self.url}: {key}: names starting {_META} or {_TMP} are reserved")
        if self.protocol == "webdav" and (bad := sorted(set(key) & _WEBDAV_UNSAFE)):
            raise NotSupported(f"{self.url}: {key!r}: WebDAV (webdav4) cannot carry {''.join(bad)!r} in a name")
        return f"{self.root}/{key}"

    # -- calling the filesystem ------------------------------------------------------------

    async def _filesystem(self) -> Any:
        if self._fs is None:
            assert self._make is not None
            with translated(self.url, ""):
                self._fs = await asyncio.to_thread(self._make)  # an async one connects on fsspec's loop

        return self._fs

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the filesystem's method `name` (its coroutine on an async one), never from a listing cache.

        fsspec implementations answer `info`, `ls` and `find` from a per-instance directory cache
        (FTP, s3fs) that another connection's writes make stale; it is emptied before each call.
        """
        fs = await self._filesystem()
        if fs.async_impl:
            async def fresh() -> Any:
                fs.invalidate_cache()
                return await getattr(fs, "_" + name)(*args, **kwargs)

            if getattr(fs, "asynchronous", False):
                return await fresh()
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fresh(), fs.loop))
        async with (await self._pool()).lease() as lease:
            with ftp_normalized():
                return await lease.run(_fresh_call, lease.conn, name, args, kwargs)

    async def _pool(self) -> Pool:
        """The threads for sync calls, and a non-thread-safe filesystem's connections (one caller each)."""
        if self._sync is None:
            fs = await self._filesystem()
            self._sync = Pool(fs, self._make, size=self._pool_size, exclusive=self.protocol in _NOT_THREAD_SAFE)
        return self._sync

    async def _makedirs(self, folder: str) -> None:
        """Make `folder` once; concurrent writers into it wait for the same request (on WebDAV a
        stampede of existence checks also races the server's own listing code: wsgidav answers 500)."""
        if self.protocol in _OBJECT_STORES:
            return
        if folder not in self._folders:
            self._folders[folder] = asyncio.ensure_future(self._mkdir(folder))
        try:
            await asyncio.shield(self._folders[folder])
        except BaseException:
            self._folders.pop(folder, None)  # the next writer tries again
            raise

    async def _mkdir(self, folder: str) -> None:
        with contextlib.suppress(FileExistsError):  # another connection (or client) made it just now
            await self._call("makedirs", folder, exist_ok=True)

    # -- the Backend protocol -----------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        with translated(self.url, key):
            info = await self._call("info", path)
        if info.get("type") != "file":
            raise ObjectNotFound(f"{self.url}: {key}: not found (a folder)")
        return ObjectInfo(key=key, size=int(info.get("size") or 0), metadata=await self._metadata(key),
                          etag=info_etag(info), checksums=info_checksums(info), last_modified=info_mtime(info))

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        path = self._path(key)
        if end is not None and end <= start:
            return b""
        with translated(self.url, key):
            data = await self._call("cat_file", path, start=start or None, end=end)
        return bytes(data)

    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        path = self._path(key)
        meta = check_metadata(metadata, key)
        if if_absent:  # not atomic: capabilities.create_only is off (fsspec has no exclusive create)
            with contextlib.suppress(ObjectNotFound):
                await self.head(key)
                raise ObjectExists(f"{self.url}: {key}: already exists")
        size = 0

        async def counted(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                size += len(chunk)
                yield chunk

        body: Body = data if isinstance(data, bytes) else counted(aiter(data))
        with translated(self.url, key):
            await self._filesystem()  # the protocol decides how to write
            await self._makedirs(path.rsplit("/", 1)[0])
            if self._native_metadata():
                await self._write(path, body, {"Metadata": meta} if meta else {})
            elif self.protocol in _OBJECT_STORES:
                await together(self._write(path, body, {}), self._put_sidecar(key, meta))
            else:  # the object and its sidecar at once: one round trip more than the object alone
                await together(self._write_then_rename(path, body), self._put_sidecar(key, meta))
        return ObjectInfo(key=key, size=len(data) if isinstance(data, bytes) else size, metadata=meta)

    async def _write(self, path: str, data: Body, extra: dict[str, Any]) -> None:
        """Write in place (an object store: the object appears only once complete)."""
        if isinstance(data, bytes):
            await self._call("pipe_file", path, data, **extra)
            return
        async with (await self._pool()).lease() as lease:  # the file's calls one at a time, even after a cancel
            f = await lease.run(functools.partial(lease.conn.open, path, "wb", **extra))
            try:
                async for chunk in data:
                    await lease.run(f.write, chunk)
            except BaseException:
                await lease.run(_discard, f)  # abort the multipart upload: nothing becomes visible
                raise
            await lease.run(f.close)

    async def _write_then_rename(self, path: str, data: Body) -> None:
        """Write under a temp name beside `path`, rename into place once whole; remove it on any error."""
        folder = path.rpartition("/")[0]
        tmp = f"{folder}/{_TMP}{uuid.uuid4().hex}"
        try:
            fs = await self._filesystem()
            if self.protocol == "webdav":  # one PUT: webdav4's pipe_file lists the parent folder first
                source = io.BytesIO(data) if isinstance(data, bytes) else _Reader(data, asyncio.get_running_loop())
                await asyncio.to_thread(fs.client.upload_fileobj, source, tmp, overwrite=True)
            elif isinstance(data, bytes):
                await self._call("pipe_file", tmp, data)
            else:
                async with (await self._pool()).lease() as lease:  # the whole stream on one connection
                    f = await lease.run(lease.conn.open, tmp, "wb")
                    try:
                        async for chunk in data:
                            await lease.run(f.write, chunk)
                    finally:
                        await lease.run(f.close)
            await self._rename(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._call("rm_file", tmp)
            raise

    async def _rename(self, tmp: str, path: str) -> None:
        """Replace `path` with `tmp` in one request: webdav4's `mv` of a file is fsspec's copy + delete
        (which also refuses an existing target), so WebDAV gets one MOVE with `Overwrite: T`."""
        if self.protocol == "webdav":
            fs = await self._filesystem()
            await asyncio.to_thread(fs.client.move, tmp, path, overwrite=True)
        else:
            await self._call("mv", tmp, path)

    def _native_metadata(self) -> bool:
        """s3fs keeps metadata on the object, where Deadline reads it; everything else gets sidecars."""
        return self._fs is not None and type(self._fs).__module__.split(".")[0] == "s3fs"

    async def _metadata(self, key: str) -> dict[str, str]:
        if self._native_metadata():
            with translated(self.url, key):
                return {k.lower(): v for k, v in (await self._call("metadata", self._path(key))).items()}
        try:
            return dict(json.loads(await self._call("cat_file", self.path_of(key, sidecar=True))))
        except FileNotFoundError:
            return {}

    async def _put_sidecar(self, key: str, meta: dict[str, str]) -> None:
        sidecar = self.path_of(key, sidecar=True)
        if meta:
            await self._makedirs(sidecar.rsplit("/", 1)[0])
            if self.protocol in _OBJECT_STORES:
                await self._write(sidecar, json.dumps(meta).encode(), {})
            else:
                await self._write_then_rename(sidecar, json.dumps(meta).encode())
        else:
            with contextlib.suppress(FileNotFoundError):
                await self._call("rm_file", sidecar)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = f"{self.root}/{folder}".rstrip("/")
        with translated(self.url, prefix):
            try:
                found = await self._call("find", base, detail=True)
            except FileNotFoundError:
                return
        root = self.root.strip("/")  # implementations disagree on a leading '/' in the names they return
        for path, info in sorted(found.items()):
            key = path.strip("/")[len(root):].lstrip("/") if root else path.strip("/")
            if (info.get("type") == "file" and key.startswith(prefix) and key.split("/", 1)[0] != _META
                    and not key.rsplit("/", 1)[-1].startswith(_TMP)):
                yield ObjectInfo(key=key, size=int(info.get("size") or 0), etag=info_etag(info),
                                 last_modified=info_mtime(info))

    async def delete(self, key: str) -> None:
        path = self._path(key)
        check_send_by(self.url, key)
        for target in (path, self.path_of(key, sidecar=True)):
            with translated(self.url, key), contextlib.suppress(FileNotFoundError):
                await self._call("rm_file", target)

    async def aclose(self) -> None:
        pool, self._sync = self._sync, None
        conns = [self._fs] if pool is None else pool.close()
        if self._make is not None:  # a filesystem passed in is the caller's to close
            self._fs = None
            for fs in conns:
                if fs is not None:
                    with contextlib.suppress(Exception):
                        await close_fs(fs)


def _discard(f: Any) -> None:
    f.discard()
    f.closed = True  # else fsspec's __del__ closes the discarded file, and fails on its dropped buffer


def _fresh_call(fs: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    fs.invalidate_cache()
    return getattr(fs, name)(*args, **kwargs)


class _Reader(io.RawIOBase):
    """A file to read from, for a sync client on a worker thread, whose bytes come from a `Body` on the
    event loop: each `read` pulls the next chunk there. An error of the stream surfaces in `read`."""

    def __init__(self, data: Body, loop: asyncio.AbstractEventLoop) -> None:
        self._chunks = None if isinstance(data, bytes) else aiter(data)
        self._buffer = memoryview(data) if isinstance(data, bytes) else memoryview(b"")
        self._loop = loop

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer and self._chunks is not None:
            try:
                self._buffer = memoryview(asyncio.run_coroutine_threadsafe(
                    anext(self._chunks), self._loop).result())  # type: ignore[arg-type]
            except StopAsyncIteration:
                self._chunks = None
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n
