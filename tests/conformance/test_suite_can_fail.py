"""Proof that the conformance checks can fail: backends broken on purpose are caught."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from fscas.backends import Backend, Body, ObjectInfo
from fscas.conformance.suite import run_suite
from fscas.runner import run_sync


class _Wrapper:
    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.url = inner.url
        self.capabilities = inner.capabilities

    async def head(self, key: str) -> ObjectInfo:
        return await self.inner.head(key)

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        return await self.inner.get(key, start=start, end=end)

    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        return await self.inner.put(key, data, metadata=metadata, if_absent=if_absent)

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        return self.inner.list(prefix)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def aclose(self) -> None:
        await self.inner.aclose()


class DropsMetadata(_Wrapper):
    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        return await self.inner.put(key, data, if_absent=if_absent)


class IgnoresDataSuffix(_Wrapper):
    """Stores `Data/<hash>.xxh128` as `Data/<hash>` and reads it back consistently: only raw reads see it."""

    @staticmethod
    def _k(key: str) -> str:
        return key.removesuffix(".xxh128")

    async def head(self, key: str) -> ObjectInfo:
        return await self.inner.head(self._k(key))

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        return await self.inner.get(self._k(key), start=start, end=end)

    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        return await self.inner.put(self._k(key), data, metadata=metadata, if_absent=if_absent)


class IgnoresCreateOnly(_Wrapper):
    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        return await self.inner.put(key, data, metadata=metadata)


def _failed(tmp_path: Path, wrapper: type[_Wrapper]) -> set[str]:
    results = run_sync(run_suite(str(tmp_path / "store"), wrap=wrapper))
    return {r.check for r in results if r.status == "fail"}


def test_honest_wrapper_passes(tmp_path: Path) -> None:
    assert _failed(tmp_path, _Wrapper) == set()


def test_dropped_metadata_is_caught(tmp_path: Path) -> None:
    assert {"output_manifest_ascii_root", "output_manifest_non_ascii_root"} <= _failed(tmp_path, DropsMetadata)


def test_ignored_data_suffix_is_caught(tmp_path: Path) -> None:
    assert {"data_key_layout", "multipart_object", "delete_and_gc"} & _failed(tmp_path, IgnoresDataSuffix)
    assert "data_key_layout" in _failed(tmp_path, IgnoresDataSuffix)


def test_ignored_create_only_is_caught(tmp_path: Path) -> None:
    assert "create_only" in _failed(tmp_path, IgnoresCreateOnly)
