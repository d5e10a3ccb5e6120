"""An in-process bucket for tests and embedding. Each backend owns its dict: nothing is global."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping

import attrs

from fscas.backends.base import Body, Capabilities, ObjectInfo, check_key, check_metadata
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


class MemoryBackend:
    """Objects in a dict owned by this backend; two `open_backend("memory://x")` do not share."""

    capabilities = Capabilities(create_only=True, root="folder")

    def __init__(self, name: str = "", prefix: str = "") -> None:
        self.url = f"memory://{name}/{prefix}".rstrip("/")
        self._objects: dict[str, _Object] = {}

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
        self._objects[key] = _Object(data, meta, time.time())
        return await self.head(key)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        for key in sorted(k for k in self._objects if k.startswith(prefix)):
            if key in self._objects:
                yield await self.head(key)

    async def delete(self, key: str) -> None:
        self._objects.pop(check_key(key), None)  # idempotent, as S3's

    async def aclose(self) -> None:
        return None
