"""The schedules that lost data before the epoch was compare-and-swapped, scripted on real stores:
two gcs at once with a stalled delete, a gc stopped (SIGSTOP) mid-delete while another gc runs and
a push returns, and the epoch object deleted by hand while a gc waits to delete. After each, every
push that returned verifies complete."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import fscas
from fscas import epoch, keys
from fscas.backends import ObjectInfo, open_backend
from fscas.errors import StoreError
from fscas.manifests import hash_bytes, snapshot
from fscas.store import AsyncStore

KINDS = ["file", "moto", "seaweedfs"]


def _target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    from fscas.conformance.plugin import unique_bucket

    if kind == "file":
        return str(tmp_path / "store"), {}
    emulator = request.getfixturevalue({"moto": "moto_server", "seaweedfs": "seaweedfs"}[kind])
    bucket = unique_bucket()
    emulator.create_bucket(bucket)
    return emulator.store_url(bucket, "root"), emulator.env()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Any:
    def apply(values: dict[str, str]) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
    return apply


def _tree(root: Path, contents: list[bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(contents):
        (root / f"f{i}.bin").write_bytes(data)
    return root


async def _complete(url: str, manifest: fscas.Manifest) -> list[str]:
    async with fscas.open_async_store(url, existence_cache=False) as fresh:
        report = await fresh.verify([manifest])
    return list(report.missing)


class _Stalled:
    """A backend whose first delete stalls (a slow network), everything else passed through."""

    def __init__(self, backend: Any, stall: float) -> None:
        self.backend, self.stall, self.stalled = backend, stall, False
        self.url, self.capabilities = backend.url, backend.capabilities

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        return self.backend.list(prefix)  # type: ignore[no-any-return]

    async def delete(self, key: str) -> None:
        if not self.stalled:
            self.stalled = True
            await asyncio.sleep(self.stall)
        await self.backend.delete(key)


@pytest.mark.parametrize("stall", [0.3, 3.0], ids=["within its window", "past its window"])
@pytest.mark.parametrize("kind", KINDS)
def test_two_gcs_at_once_with_a_stalled_delete(kind: str, stall: float, request: pytest.FixtureRequest,
                                               tmp_path: Path, env: Any) -> None:
    url, variables = _target(kind, request, tmp_path)
    env(variables)
    lease = 4.0  # a delete window of 0.67 s
    content = [b"uploaded again by the push %d" % i for i in range(3)]
    src = _tree(tmp_path / "src", content)

    async def go() -> tuple[list[Any], fscas.Manifest]:
        async with fscas.open_async_store(url, existence_cache=False) as store:
            await epoch.ensure_epoch(store.backend)  # a store in use (no epoch in a store holding data: a wait)
            for data in content:  # orphans now; the push will reference them
                await store.put_bytes(data)
            a = AsyncStore(_Stalled(open_backend(url), stall), existence_cache=False)
            b = fscas.open_async_store(url, existence_cache=False)
            gc_a = asyncio.ensure_future(a.gc(delete=True, grace_seconds=0, lease=lease))
            while not ((now := await epoch.read_epoch(store.backend)) and now.running):  # A holds the epoch
                await asyncio.sleep(0.01)
            gc_b = asyncio.ensure_future(b.gc(delete=True, grace_seconds=0, lease=lease))
            await asyncio.sleep(0.1)
            manifest = await asyncio.to_thread(snapshot, src, hash_cache=False)
            await store.push(manifest, src, farm_id="f", queue_id="q")
            results = await asyncio.gather(gc_a, gc_b, return_exceptions=True)
            await a.aclose()
            await b.aclose()
        return results, manifest

    (a_result, b_result), manifest = asyncio.run(go())
    assert asyncio.run(_complete(url, manifest)) == []
    if stall > epoch.window(lease):
        assert isinstance(a_result, StoreError) and "took longer than" in str(a_result), a_result
    else:
        assert not isinstance(a_result, BaseException), a_result
    assert not isinstance(b_result, BaseException), b_result


GC_SLOWLY = r"""
import asyncio, sys, fscas
from fscas.backends import open_backend
from fscas.store import AsyncStore

class Slow:  # each delete takes 20 ms: the run lasts long enough to be stopped in the middle
    def __init__(self, backend): self.backend, self.url, self.capabilities = backend, backend.url, backend.capabilities
    def __getattr__(self, name): return getattr(self.backend, name)
    def list(self, prefix): return self.backend.list(prefix)
    async def delete(self, key):
        await asyncio.sleep(0.02)
        await self.backend.delete(key)

async def main():
    async with AsyncStore(Slow(open_backend(sys.argv[1])), existence_cache=False) as store:
        report = await store.gc(delete=True, grace_seconds=0, lease=float(sys.argv[2]))
    print(len(report.unreferenced), flush=True)
asyncio.run(main())
"""


@pytest.mark.parametrize("kind", KINDS)
def test_a_gc_stopped_mid_delete_while_another_runs_and_a_push_returns(kind: str, request: pytest.FixtureRequest,
                                                                        tmp_path: Path, env: Any) -> None:
    url, variables = _target(kind, request, tmp_path)
    env(variables)
    lease, orphans = 3.0, 600
    content = [b"orphan %d" % i for i in range(orphans)]
    src = _tree(tmp_path / "src", content[-5:])  # the push holds what gc A still means to delete

    async def seed() -> None:
        async with fscas.open_async_store(url, existence_cache=False) as store:
            await epoch.ensure_epoch(store.backend)
            sem = asyncio.Semaphore(32)

            async def put(data: bytes) -> None:
                async with sem:
                    await store.put_bytes(data)
            await asyncio.gather(*(put(d) for d in content))

    asyncio.run(seed())
    child_env = {**os.environ, **variables}
    gc_a = subprocess.Popen([sys.executable, "-c", GC_SLOWLY, url, str(lease)], env=child_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with fscas.open_store(url, existence_cache=False) as store:
            deadline = time.monotonic() + 120
            while asyncio.run(_count(url)) > orphans - 128:  # A has deleted two batches or more
                assert time.monotonic() < deadline and gc_a.poll() is None, gc_a.stderr
                time.sleep(0.02)
            gc_a.send_signal(signal.SIGSTOP)
            stopped_after = orphans - asyncio.run(_count(url))
            b = subprocess.run([sys.executable, "-c", GC_SLOWLY.replace("0.02", "0"), url, str(lease)],
                               env=child_env, capture_output=True, text=True, timeout=120)
            assert b.returncode == 0, b.stderr  # B waited out A's lease, took over and finished
            manifest = snapshot(src, hash_cache=False)
            store.push(manifest, src, farm_id="f", queue_id="q")  # the push exits 0
    finally:
        gc_a.send_signal(signal.SIGCONT)
    _, a_err = gc_a.communicate(timeout=120)
    assert gc_a.returncode != 0 and "gc stopped" in a_err, a_err  # A found its hold gone: deleted nothing more
    assert asyncio.run(_complete(url, manifest)) == [], f"A was stopped after deleting {stopped_after}"


@pytest.mark.parametrize("kind", KINDS)
def test_the_epoch_deleted_by_hand_while_a_gc_waits_to_delete(kind: str, request: pytest.FixtureRequest,
                                                              tmp_path: Path, env: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    url, variables = _target(kind, request, tmp_path)
    env(variables)
    monkeypatch.setattr(epoch, "SETTLE", 1.0)  # the push's wait for deletes in flight, shortened for the test
    content = [b"orphan the push brings back %d" % i for i in range(3)]
    src = _tree(tmp_path / "src", content)
    marked = asyncio.Event()
    go_on = asyncio.Event()

    class Pausing(_Stalled):
        def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
            async def listing() -> AsyncIterator[ObjectInfo]:
                async for o in self.backend.list(prefix):
                    yield o
                if prefix.startswith(keys.MANIFESTS):  # marked: about to delete
                    marked.set()
                    await go_on.wait()
            return listing()

    async def go() -> tuple[Any, fscas.Manifest]:
        async with fscas.open_async_store(url, existence_cache=False) as store:
            await epoch.ensure_epoch(store.backend)
            for data in content:
                await store.put_bytes(data)
            gc = AsyncStore(Pausing(open_backend(url), 0), existence_cache=False)
            running = asyncio.ensure_future(gc.gc(delete=True, grace_seconds=0, lease=10))
            await marked.wait()
            await store.backend.delete(keys.EPOCH)  # by hand
            manifest = await asyncio.to_thread(snapshot, src, hash_cache=False)
            await store.push(manifest, src, farm_id="f", queue_id="q")
            go_on.set()
            result = await asyncio.gather(running, return_exceptions=True)
            await gc.aclose()
            return result[0], manifest

    result, manifest = asyncio.run(go())
    assert isinstance(result, StoreError) and "gc stopped" in str(result), result
    assert asyncio.run(_complete(url, manifest)) == []
    assert all(asyncio.run(_present(url, [hash_bytes(d) for d in content])))


async def _count(url: str) -> int:
    async with fscas.open_async_store(url, existence_cache=False) as store:
        return len([o async for o in store.backend.list(keys.DATA + "/")])


async def _present(url: str, digests: list[str]) -> list[bool]:
    async with fscas.open_async_store(url, existence_cache=False) as store:
        return [await store.has(d) for d in digests]
