"""A folder as a bucket: the embedded default store. Every write is temp file + rename."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import attrs

from fscas.backends.base import Body, Capabilities, ObjectInfo, at, check_key, check_metadata, check_send_by
from fscas.backends.url import Location, build_options
from fscas.errors import AccessDenied, BucketNotFound, ConfigError, ObjectExists, ObjectNotFound, StoreError

__all__ = ["FileBackend", "FileOptions"]

# User metadata lives beside the tree in one hidden folder, so listings of the tree stay clean
# and a Deadline-style debug snapshot layout (`Data/`, `Manifests/`) is kept as is.
_META = ".fscas-meta"
_TMP_PREFIX, _TMP_SUFFIX = ".fscas-", ".partial"
_LOCK = ".fscas-lock"  # taken around each compare-and-swap; a reserved name (it starts with _TMP_PREFIX)

try:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed
except ImportError:  # Windows has no fcntl: msvcrt's lock of the first byte serves the same purpose
    import msvcrt

    def _lock(fd: int) -> None:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]  # retries for 10 s, then raises
                return
            except OSError:
                continue


@attrs.frozen(kw_only=True)
class FileOptions:
    """Options of a `file://` store."""

    durable: bool = True
    """fsync each object before it is renamed into place (survives a power cut, not only a crash)."""
    create: bool = True
    """Create the root folder on the first write when it does not exist (reads never create it)."""


class FileBackend:
    """Objects are files under `root`; keys are `/`-separated relative paths."""

    capabilities = Capabilities(create_only=True, root="folder")  # os.link refuses an existing name atomically

    def __init__(self, root: str | os.PathLike[str], options: FileOptions | None = None) -> None:
        self.root = Path(root).absolute()
        self.options = options or FileOptions()
        self.url = self.root.as_uri()
        self.created = False
        """Whether this backend created the root folder (on its first write)."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"{self.root}: the store folder is a file")

    @classmethod
    def from_location(cls, location: Location, options: Mapping[str, object]) -> FileBackend:
        opts = build_options(FileOptions, location, options)
        return cls(location.bucket, opts)

    def __repr__(self) -> str:
        return f"FileBackend({self.url!r})"

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.split("/", 1)[0] == _META or key.rsplit("/", 1)[-1].startswith(_TMP_PREFIX):
            raise StoreError(f"{self.url}: {key}: names starting {_META} or {_TMP_PREFIX} are reserved")
        return self.root / key

    async def head(self, key: str) -> ObjectInfo:
        return await asyncio.to_thread(self._head, key)

    def _head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        with _translated(self, key):
            st = path.stat()
            if not path.is_file():
                raise FileNotFoundError(key)
        meta = self.root / _META / key
        metadata = json.loads(meta.read_bytes()) if meta.exists() else {}
        return ObjectInfo(key=key, size=st.st_size, metadata=metadata, last_modified=st.st_mtime)

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        return await asyncio.to_thread(self._get, key, start, end)

    def _get(self, key: str, start: int, end: int | None) -> bytes:
        path = self._path(key)
        with _translated(self, key), open(path, "rb") as f:
            f.seek(start)
            return f.read() if end is None else f.read(max(0, end - start))

    async def _make_root(self, key: str) -> None:
        if not self.root.is_dir():
            if not self.options.create:
                raise BucketNotFound(f"{self.url}: the store folder does not exist (create=false)")
            with _translated(self, key):
                await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
            self.created = True

    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        path = self._path(key)
        meta = check_metadata(metadata, key)
        await self._make_root(key)
        with _translated(self, key):
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX, dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    if isinstance(data, bytes):
                        await asyncio.to_thread(f.write, data)
                    else:
                        async for chunk in data:
                            await asyncio.to_thread(f.write, chunk)
                    st = await asyncio.to_thread(self._commit, f, tmp, path, key, meta, if_absent)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        # What was written, not a HEAD after it: a gc may delete the fresh object before a HEAD asks.
        return ObjectInfo(key=key, size=st.st_size, metadata=meta, last_modified=st.st_mtime)

    def _commit(self, f: BinaryIO, tmp: str, path: Path, key: str, meta: dict[str, str],
                if_absent: bool) -> os.stat_result:
        f.flush()
        os.fchmod(f.fileno(), 0o644)
        if self.options.durable:
            os.fsync(f.fileno())
        sidecar = self.root / _META / key
        if if_absent and path.exists():
            raise FileExistsError(key)
        if meta:
            sidecar.parent.mkdir(parents=True, exist_ok=True)
            sidecar.write_text(json.dumps(meta))
        else:
            with contextlib.suppress(FileNotFoundError):
                sidecar.unlink()
        if if_absent:
            os.link(tmp, path)  # atomic: EEXIST if another writer won
        else:
            os.replace(tmp, path)
        return os.fstat(f.fileno())

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        return await asyncio.to_thread(self._get_tagged, key)

    def _get_tagged(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        with _translated(self, key), open(path, "rb") as f:
            return f.read(), _tag(os.fstat(f.fileno()))  # the version this handle reads, whatever renames follow

    async def put_tagged(self, key: str, data: bytes, *, tag: str | None) -> str:
        path = self._path(key)
        await self._make_root(key)
        with _translated(self, key):
            return await asyncio.to_thread(self._put_tagged, path, key, data, tag)

    def _put_tagged(self, path: Path, key: str, data: bytes, tag: str | None) -> str:
        """Write `data` to a temp file, then, holding the store's lock, rename it over `path` only if
        `path` is still the version `tag` names. Every write renames a new file into place, so a
        version is its inode (with mtime and size, against an inode number reused)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), 0o644)
                if self.options.durable:
                    os.fsync(f.fileno())
                written = _tag(os.fstat(f.fileno()))
                lock = os.open(self.root / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    _lock(lock)
                    try:
                        now: str | None = _tag(os.stat(path))
                    except FileNotFoundError:
                        now = None
                    if now != tag:
                        raise _Changed(key)
                    os.replace(tmp, path)
                finally:
                    os.close(lock)
            return written
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        found = self._walk(prefix)  # walked a thousand at a time: the first objects come before the last are seen
        while batch := await asyncio.to_thread(lambda: list(itertools.islice(found, 1000))):
            for info in batch:
                yield info

    def _walk(self, prefix: str) -> Iterator[ObjectInfo]:
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / folder
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = sorted(d for d in dirnames if (rel_dir + d) != _META and
                                 ((rel_dir + d + "/").startswith(prefix) or prefix.startswith(rel_dir + d + "/")))
            for name in sorted(filenames):
                key = rel_dir + name
                if key.startswith(prefix) and not name.startswith(_TMP_PREFIX):  # temp files, the lock
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(os.path.join(dirpath, name))
                        yield ObjectInfo(key=key, size=st.st_size, last_modified=st.st_mtime)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        loop = asyncio.get_running_loop()

        def unlink() -> None:
            check_send_by(self.url, key, loop.time())  # in the thread, right before it: a busy pool may wait
            path.unlink()

        with _translated(self, key), contextlib.suppress(FileNotFoundError):  # idempotent, as S3's
            await asyncio.to_thread(unlink)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread((self.root / _META / key).unlink)

    async def aclose(self) -> None:
        return None


def _tag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


class _Changed(FileExistsError):
    """A compare-and-swap found another version than the one it was given."""


@contextlib.contextmanager
def _translated(backend: FileBackend, key: str) -> Iterator[None]:
    url = backend.url
    try:
        yield
    except StoreError:  # ours already (an OSError too: it must not be wrapped again below)
        raise
    except _Changed as e:
        raise ObjectExists(f"{at(url, key)}: changed since it was read") from e
    except FileExistsError as e:
        raise ObjectExists(f"{at(url, key)}: already exists") from e
    except FileNotFoundError as e:
        if not backend.root.is_dir():
            raise BucketNotFound(f"{url}: the store folder does not exist") from e
        raise ObjectNotFound(f"{at(url, key)}: not found") from e
    except PermissionError as e:
        raise AccessDenied(f"{at(url, key)}: permission denied") from e
    except NotADirectoryError as e:
        raise ObjectNotFound(f"{at(url, key)}: not found (a parent is a file)") from e
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise BucketNotFound(f"{url}: root folder is missing") from e
        raise StoreError(f"{at(url, key)}: {e.strerror or e}") from e
