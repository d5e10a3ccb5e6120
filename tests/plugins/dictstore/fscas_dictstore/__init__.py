"""An example third-party fscas backend: `dictstore://bucket/prefix`, objects in a dict of this process.

It implements the `Backend` protocol (and the optional `RawAccess` hook that gives the conformance
suite its ground truth) without subclassing anything of fscas's, and registers its scheme through
the `fscas.backends` entry point in its pyproject.toml. Its own tests run fscas's conformance suite
on it by subclassing `fscas.conformance.testing.BackendSuite`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fscas.backends import Capabilities, Location, ObjectInfo, check_key, check_metadata
from fscas.errors import BucketNotFound, ObjectExists, ObjectNotFound

BUCKETS: dict[str, dict[str, tuple[bytes, dict[str, str], float]]] = {"bucket": {}, "other": {}}
"""The buckets of this process: the example's storage (a real backend talks to a server)."""


class DictBackend:
    capabilities = Capabilities(create_only=True)

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"dictstore://{bucket}/{self.prefix}".rstrip("/")

    @classmethod
    def from_location(cls, location: Location, options: Mapping[str, Any]) -> DictBackend:
        return cls(location.bucket, location.prefix)

    def _objects(self) -> dict[str, tuple[bytes, dict[str, str], float]]:
        try:
            return BUCKETS[self.bucket]
        except KeyError:
            raise BucketNotFound(f"{self.url}: bucket does not exist") from None

    def _key(self, key: str) -> str:
        return self._root() + check_key(key)

    def _root(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    async def head(self, key: str) -> ObjectInfo:
        try:
            data, meta, mtime = self._objects()[self._key(key)]
        except KeyError:
            raise ObjectNotFound(f"{self.url}: {key}: not found") from None
        return ObjectInfo(key=key, size=len(data), metadata=meta, last_modified=mtime)

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        await self.head(key)
        return self._objects()[self._key(key)][0][start:end]

    async def put(self, key: str, data: Any, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        meta = check_metadata(metadata, key)
        body = data if isinstance(data, bytes) else b"".join([c async for c in data])
        objects = self._objects()
        if if_absent and self._key(key) in objects:
            raise ObjectExists(f"{self.url}: {key}: already exists")
        objects[self._key(key)] = (body, meta, time.time())
        return ObjectInfo(key=key, size=len(body), metadata=meta)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        root = self._root()
        for name in sorted(k for k in self._objects() if k.startswith(root + prefix)):
            data, _, mtime = self._objects()[name]
            yield ObjectInfo(key=name[len(root):], size=len(data), last_modified=mtime)

    async def delete(self, key: str) -> None:
        self._objects().pop(self._key(key), None)

    async def aclose(self) -> None:
        return None

    def raw(self) -> Raw:
        return Raw(self)


class Raw:
    """Ground truth for the conformance suite: the dict itself, not the backend's methods."""

    def __init__(self, backend: DictBackend) -> None:
        self.backend = backend

    def read(self, key: str) -> bytes:
        try:
            return self.backend._objects()[self.backend._key(key)][0]
        except KeyError:
            raise FileNotFoundError(key) from None

    def write(self, key: str, data: bytes) -> None:
        self.backend._objects()[self.backend._key(key)] = (data, {}, time.time())

    def metadata(self, key: str) -> dict[str, str]:
        return dict(self.backend._objects()[self.backend._key(key)][1])
