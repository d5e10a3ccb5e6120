"""An in-process bucket for tests and embedding. Each backend owns its dict: nothing is global."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping

import attrs

from fscas.backends.base import Body, Capabilities, ObjectInfo, check_key, check_metadata, check_send_by
from fscas.backends.url import Location, build_options
from fscas.errors import ObjectExists, ObjectNotFound

__all__ = ["MemoryBackend", "MemoryOptions"]


@attrs.frozen(kw_only=True)
class MemoryOptions:
    """`memory://` takes no options; the class exists so that a misspelt one is an error."""


@attrs.frozen
class _Object:
    data: bytes
    metadata: Mapping[str, str]
    mtime: float
    tag: str = ""


class MemoryBackend:
    """Objects in a dict owned by this backend; two `open_backend("memory://x")` do not share."""

    capabilities = Capabilities(create_only=True, root="folder")

    def __init__(self, name: str = "", prefix: str = "") -> None:
        self.url = f"memory://{name}/{prefix}".rstrip("/")
        self._objects: dict[str, _Object] = {}
        self._writes = 0  # every write gets a new tag, as a server's ETag or generation

    @classmethod
    def from_location(cls, location: Location, options: Mapping[str, object]) -> MemoryBackend:
        build_options(MemoryOptions, location, options)
        return cls(location.bucket, location.prefix)

    def __repr__(self) -> str:
        return f"MemoryBackend({self.url!r})"

    def _find(self, key: str) -> _Object:
        try:
            return self._objects[check_key(key)]
        except KeyError:
            raise ObjectNotFound(f"{self.url}: {key}: not found") from None

    async def head(self, key: str) -> ObjectInfo:
        obj = self._find(key)
        return ObjectInfo(key=key, size=len(obj.data), metadata=obj.metadata, last_modified=obj.mtime)

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        return self._find(key).data[start:end]

    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        check_key(key)
        meta = check_metadata(metadata, key)
        if not isinstance(data, bytes):
            data = b"".join([chunk async for chunk in data])
        if if_absent and key in self._objects:
            raise ObjectExists(f"{self.url}: {key}: already exists")
        self._store(key, data, meta)
        return await self.head(key)

    def _store(self, key: str, data: bytes, meta: Mapping[str, str]) -> str:
        self._writes += 1
        self._objects[key] = _Object(data, meta, time.time(), str(self._writes))
        return str(self._writes)

    async def get_tagged(self, key: str) -> tuple[bytes, str]:
        obj = self._find(key)
        return obj.data, obj.tag

    async def put_tagged(self, key: str, data: bytes, *, tag: str | None) -> str:
        now = self._objects.get(check_key(key))
        if (now.tag if now is not None else None) != tag:
            raise ObjectExists(f"{self.url}: {key}: changed since it was read")
        return self._store(key, data, {})

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        for key in sorted(k for k in self._objects if k.startswith(prefix)):
            if key in self._objects:
                yield await self.head(key)

    async def delete(self, key: str) -> None:
        check_send_by(self.url, key)
        self._objects.pop(check_key(key), None)  # idempotent, as S3's

    async def aclose(self) -> None:
        return None

    def raw(self) -> _Raw:
        """This backend's own objects, for the conformance suite (`fscas.backends.base.RawAccess`)."""
        return _Raw(self._objects)


class _Raw:
    """The objects dict itself: in memory, nothing else could be the ground truth."""

    def __init__(self, objects: dict[str, _Object]) -> None:
        self._objects = objects

    def read(self, key: str) -> bytes:
        try:
            return self._objects[key].data
        except KeyError:
            raise FileNotFoundError(key) from None

    def write(self, key: str, data: bytes) -> None:
        self._objects[key] = _Object(data, {}, time.time())

    def metadata(self, key: str) -> dict[str, str]:
        return dict(self._objects[key].metadata)
