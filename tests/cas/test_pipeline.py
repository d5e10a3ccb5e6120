"""`push_folder` / `fscas.pipeline`: small files sent from the bytes they were hashed from, while hashing
goes on; what it asks the store; errors; memory bound; files the caller keeps out."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from stores import counted_calls, evict

import fscas
from fscas import pipeline
from fscas.commit import SAMPLE
from fscas.conformance.plugin import unique_bucket
from fscas.errors import StoreError
from fscas.existence import ExistenceCache
from fscas.manifests import Manifest, hash_bytes, snapshot


@pytest.fixture(autouse=True)
def _own_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _tree(root: Path, files: int, prefix: str = "f") -> dict[str, bytes]:
    contents = {f"d{i % 7}/{prefix}{i}.txt": f"{prefix} content {i}\n".encode() * (i % 5 + 1) for i in range(files)}
    for rel, data in contents.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return contents


def test_a_small_file_is_sent_from_the_bytes_it_was_hashed_from(tmp_path: Path) -> None:
    # Every file is rewritten right after it is hashed: a push that read it again to send it would
    # find other bytes and refuse (IntegrityError); one that sends what it hashed stores the content
    # the manifest names.
    src = tmp_path / "src"
    contents = _tree(src, 300)

    def rewriting(on_hashed: Any) -> Manifest:
        def told(batch: list[tuple[str, str, bytes]]) -> None:
            on_hashed(batch)
            for rel, _, _ in batch:
                (src / rel).write_bytes(b"changed after hashing")
        return snapshot(src, hash_cache=False, on_hashed=told)

    async def go() -> None:
        async with fscas.open_async_store(str(tmp_path / "store")) as store:
            m, _, summary = await pipeline.push_tree(store, src, "Manifests/m", rewriting)
            assert {p.path: p.hash for p in m.paths} == {rel: hash_bytes(data) for rel, data in contents.items()}
            for rel, data in contents.items():
                assert await store.get_bytes(hash_bytes(data)) == data, rel
            assert summary.files == len(set(contents.values()))

    asyncio.run(go())


def test_what_a_push_asks_the_store(moto_server: Any, tmp_path: Path) -> None:
    # Cold push to an empty store: one listing of Data/ (does the store without an epoch hold data,
    # fscas.epoch), one estimate and one listing of Data/, no HEAD. Unchanged: no
    # upload, only the commit's sample of what the existence cache answered (Deadline issue #634).
    # One changed file: one HEAD, one PUT (the cache knows the rest), and that sample.
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    src = tmp_path / "src"
    _tree(src, 40)
    cache = ExistenceCache(tmp_path / "existence.db")

    async def go() -> list[dict[str, int]]:
        url = moto_server.store_url(bucket, "root")
        costs = []
        async with fscas.open_async_store(url, existence_cache=cache, **moto_server.options()) as store:
            for change in (None, None, "d3/f3.txt"):
                if change:
                    (src / change).write_bytes(b"changed")
                calls = counted_calls(store)
                _, _, _, summary = await store.push_folder(src, farm_id="f", queue_id="q")
                costs.append({k: v for k, v in calls.items() if "Data" in k or k == "list"})
                costs[-1]["files sent"] = summary.files
        return costs

    cold, unchanged, one = asyncio.run(go())
    assert cold["files sent"] == 40 and cold["put Data"] == 40 and "head Data" not in cold
    assert cold["list"] == 3, cold  # Data/ (a new store?), Data/00 (the estimate), then Data/
    assert unchanged == {"head Data": SAMPLE, "files sent": 0}, unchanged
    assert one == {"head Data": 1 + SAMPLE, "put Data": 1, "files sent": 1}, one


class _Failing:
    """A backend whose Data PUTs fail after `after` of them (everything else passes through)."""

    def __init__(self, backend: Any, after: int) -> None:
        self.backend, self.after = backend, after
        self.url, self.capabilities = backend.url, backend.capabilities

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def put(self, key: str, data: Any, **kw: Any) -> Any:
        if key.startswith("Data/"):
            self.after -= 1
            if self.after < 0:
                raise StoreError(f"{self.url}: {key}: injected failure")
        return await self.backend.put(key, data, **kw)


def test_an_early_upload_error_ends_the_push_as_itself(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, 2000)

    async def go() -> None:
        inner = fscas.backends.open_backend(str(tmp_path / "store"))
        store = fscas.AsyncStore(_Failing(inner, after=5), existence_cache=False)  # type: ignore[arg-type]
        try:
            with pytest.raises(StoreError, match="injected failure"):
                await store.push_folder(src, farm_id="f", queue_id="q")
            assert [o.key async for o in inner.list("Manifests/")] == [], "no manifest over missing data"
        finally:
            await store.aclose()

    asyncio.run(go())


def test_hashing_waits_for_room_and_every_file_arrives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "BUDGET", 1)  # each batch waits until the one before is sent
    src = tmp_path / "src"
    contents = _tree(src, 700)

    async def go() -> None:
        async with fscas.open_async_store(str(tmp_path / "store"), existence_cache=False) as store:
            _, _, _, summary = await store.push_folder(src, farm_id="f", queue_id="q")
            assert summary.files == len(set(contents.values()))
            report = await store.verify(None)
            assert report.ok and report.checked == summary.files

    asyncio.run(go())


class _Slow(_Failing):
    """A backend whose Data PUTs take a while, counted as they complete."""

    def __init__(self, backend: Any) -> None:
        super().__init__(backend, after=10**9)
        self.puts = 0

    async def put(self, key: str, data: Any, **kw: Any) -> Any:
        await asyncio.sleep(0.001)
        out = await super().put(key, data, **kw)
        self.puts += key.startswith("Data/")
        return out


@pytest.mark.parametrize(("ahead", "bound"), [(300, True), (10**6, False)])
def test_hashing_stays_at_most_ahead_files_in_front_of_the_senders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ahead: int, bound: bool) -> None:
    # Snapshot batches are 256 files: with AHEAD 300 one batch waits until the one before is nearly
    # sent; unbounded, hashing 2,000 files runs far ahead of 1 ms PUTs (what the bound is for).
    monkeypatch.setattr(pipeline, "AHEAD", ahead)
    src = tmp_path / "src"
    _tree(src, 2000)
    lead = [0]

    async def go() -> None:
        backend = _Slow(fscas.backends.open_backend(str(tmp_path / "store")))
        store = fscas.AsyncStore(backend, existence_cache=False)  # type: ignore[arg-type]
        offered = 0

        def watched(on_hashed: Any) -> Manifest:
            def told(batch: list[tuple[str, str, bytes]]) -> None:
                nonlocal offered
                on_hashed(batch)  # returns once admitted
                offered += len(batch)
                lead[0] = max(lead[0], offered - backend.puts)
            return snapshot(src, hash_cache=False, on_hashed=told)

        try:
            await pipeline.push_tree(store, src, "Manifests/m", watched)
            assert backend.puts == 2000
        finally:
            await store.aclose()

    asyncio.run(go())
    assert (lead[0] <= 300) is bound, lead[0]


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="parallel reading is chosen by RWF_NOWAIT, Linux's")
def test_batches_offered_by_several_reading_threads_all_get_room(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Files on disk are read on several threads, each offering its batch; with little room most
    # wait at once, and each must be let in as room frees (one wake-up for the last waiter hung).
    monkeypatch.setattr(pipeline, "AHEAD", 300)
    src = tmp_path / "src"
    contents = _tree(src, 3000)
    for rel in contents:
        evict(src / rel)
    done: list[int] = []

    def push() -> None:
        async def go() -> None:
            backend = _Slow(fscas.backends.open_backend(str(tmp_path / "store")))
            store = fscas.AsyncStore(backend, existence_cache=False)  # type: ignore[arg-type]
            try:
                _, _, _, summary = await store.push_folder(src, farm_id="f", queue_id="q")
                done.append(summary.files)
            finally:
                await store.aclose()
        asyncio.run(go())

    t = threading.Thread(target=push, daemon=True)
    t.start()
    t.join(timeout=60)
    assert done == [len(set(contents.values()))], "the push never ended: a waiting batch was never let in"


def test_a_file_the_caller_keeps_out_is_never_sent(tmp_path: Path) -> None:
    src = tmp_path / "src"
    kept = _tree(src / "kept", 30)
    out = _tree(src / "out", 30, prefix="o")

    def keep(m: Manifest) -> Manifest:
        return Manifest.from_paths(p for p in m.paths if not p.path.startswith("out/"))

    async def go() -> None:
        async with fscas.open_async_store(str(tmp_path / "store")) as store:
            m, _, _ = await pipeline.push_tree(
                store, src, "Manifests/m", lambda on_hashed: snapshot(src, hash_cache=False, on_hashed=on_hashed),
                sendable=lambda rel: not rel.startswith("out/"), prepare=keep)
            assert len(m.paths) == 30
            assert all([await store.has(hash_bytes(d)) for d in kept.values()])
            assert not any([await store.has(hash_bytes(d)) for d in out.values()])

    asyncio.run(go())
