"""Push racing gc: a push that returns has a complete manifest, whatever the grace period; none hangs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import fscas
from fscas import keys
from fscas.epoch import Epoch, GcLease, ensure_epoch, read_epoch
from fscas.errors import StoreError
from fscas.existence import ExistenceCache
from fscas.manifests import snapshot
from fscas.runner import run_sync

GC_LOOP = r"""
import os, sys, time, fscas
store = fscas.open_store(sys.argv[1], existence_cache=False)
grace, stop = float(sys.argv[2]), sys.argv[3]
print("started", flush=True)
runs = deleted = 0
deadline = time.monotonic() + 300
while not os.path.exists(stop) and time.monotonic() < deadline:
    report = store.gc(delete=True, grace_seconds=grace, lease=5)
    runs += 1
    deleted += len(report.unreferenced)
print(runs, deleted, flush=True)
"""


def _write_tree(root: Path, n: int, round_: int) -> None:
    for i in range(n):
        path = root / f"d{i % 10}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"round %d file %d " % (round_, i) * 20)


def _target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str], int]:
    """(store URL, environment for the gc process, files per round)."""
    from fscas.conformance.plugin import unique_bucket

    if kind == "file":
        return str(tmp_path / "store"), {}, 1500
    emulator = request.getfixturevalue({"moto": "moto_server", "seaweedfs": "seaweedfs"}[kind])
    bucket = unique_bucket()
    emulator.create_bucket(bucket)
    return emulator.store_url(bucket, "root"), emulator.env(), 250


@pytest.mark.parametrize("grace", [0.0, 86400.0], ids=["grace-0", "grace-default"])
@pytest.mark.parametrize("kind", ["file", "moto", "seaweedfs"])
def test_push_racing_gc_never_exits_over_deleted_data(kind: str, grace: float, request: pytest.FixtureRequest,
                                                       tmp_path: Path, record: Any) -> None:
    url, env, n = _target(kind, request, tmp_path)
    os.environ.update(env)  # the in-process store reads the emulator's credentials like the gc process
    try:
        src = tmp_path / "src"
        _write_tree(src, n, 0)
        cache = ExistenceCache(tmp_path / "existence.db")
        with fscas.open_store(url, existence_cache=cache) as store:
            store.push(snapshot(src, hash_cache=False), src, farm_id="f", queue_id="q")
            stop = tmp_path / "stop"
            gc = subprocess.Popen([sys.executable, "-c", GC_LOOP, url, str(grace), str(stop)],
                                  env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
            try:
                assert gc.stdout is not None and gc.stdout.readline().strip() == "started"
                rounds = 3 if grace == 0 else 1
                for r in range(1, rounds + 1):
                    _write_tree(src, n, r)  # every file changes: every object is new, unreferenced until the push ends
                    m = snapshot(src, hash_cache=False)
                    started = time.monotonic()
                    store.push(m, src, farm_id="f", queue_id="q")
                    assert time.monotonic() - started < 120, "the push waited too long"
                    with fscas.open_store(url, existence_cache=False) as fresh:
                        report = fresh.verify([m])
                    assert report.ok, f"round {r}: {len(report.missing)} of {n} objects missing after the push returned"
            finally:
                stop.touch()
                out, _ = gc.communicate(timeout=120)
            runs, deleted = (int(x) for x in out.split())
            assert gc.returncode == 0 and runs > 0
    finally:
        for name in env:
            os.environ.pop(name, None)
    record(f"push racing `gc --delete --grace {grace:g}` in a loop ({kind})", faults=runs, runs=rounds,
           failures=0, lost=0, note=f"{deleted} uncommitted objects deleted by gc while pushes ran; every "
                                    f"push that returned verified complete")


def test_a_dead_gc_holds_pushes_for_its_lease_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write_tree(src, 20, 0)
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        backend = store.aio.backend
        run_sync(backend.put(keys.EPOCH, Epoch(id="before", gc="dead-gc", beat=3, lease=2.0).encode()))
        started = time.monotonic()
        store.push(snapshot(src, hash_cache=False), src, farm_id="f", queue_id="q")
        waited = time.monotonic() - started
        now = run_sync(read_epoch(backend))
    assert 2.0 <= waited < 30, waited
    assert now is not None and not now.running and now.id != "before"


def test_a_gc_whose_lease_was_taken_over_deletes_nothing(tmp_path: Path) -> None:
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        backend = store.aio.backend
        run_sync(ensure_epoch(backend))
        orphan = store.put_bytes(b"orphan")

        async def go() -> None:
            async with GcLease(backend, lease=1.0) as held:
                await backend.put(keys.EPOCH, Epoch(id="taken-over").encode())  # a push presumed it dead
                await held.deleting([keys.data_key(orphan)], backend.delete)

        with pytest.raises(StoreError, match="another client took over"):
            run_sync(go())
        assert store.has(orphan)
        assert run_sync(read_epoch(backend)) == Epoch(id="taken-over")


def test_a_gc_that_deletes_nothing_leaves_no_dead_marker_behind(tmp_path: Path) -> None:
    # It used to write back the marker of the dead gc it found: the next push then waited a whole lease.
    src = tmp_path / "src"
    _write_tree(src, 3, 0)
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        store.push(snapshot(src, hash_cache=False), src, farm_id="f", queue_id="q")
        backend = store.aio.backend
        run_sync(backend.put(keys.EPOCH, Epoch(id="before", gc="dead-gc", beat=1, lease=1.0).encode()))
        assert store.gc(delete=True, grace_seconds=0).unreferenced == ()
        after = run_sync(read_epoch(backend))
        assert after is not None and not after.running
        started = time.monotonic()
        store.push(snapshot(src, hash_cache=False), src, farm_id="f", queue_id="q")
        assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("lease", ["1e18", "NaN", "Infinity", "-5", '"soon"'])
def test_a_hand_edited_lease_is_lapsed_with_a_warning(lease: str, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "src"
    _write_tree(src, 3, 0)
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        run_sync(ensure_epoch(store.aio.backend))
        marker = '{"id": "e", "gc": "edited", "beat": 0, "lease": ' + lease + '}'
        run_sync(store.aio.backend.put(keys.EPOCH, marker.encode()))
        started = time.monotonic()
        store.push(snapshot(src, hash_cache=False), src, farm_id="f", queue_id="q")
        assert time.monotonic() - started < 5
    assert any(store.url in r.getMessage() and "lease" in r.getMessage() and "edited" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING"), caplog.text


def test_a_waiting_push_says_what_it_waits_for(tmp_path: Path) -> None:
    from cli_runner import run_fscas

    src = tmp_path / "src"
    _write_tree(src, 3, 0)
    store = tmp_path / "store"
    with fscas.open_store(str(store), existence_cache=False) as s:
        run_sync(ensure_epoch(s.aio.backend))
        run_sync(s.aio.backend.put(keys.EPOCH, Epoch(id="e", gc="silent-gc", beat=0, lease=5.0).encode()))
    r = run_fscas("push", str(src), "--store", str(store), home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "waiting for gc silent-gc to finish" in r.stderr and "presumed dead after 5 s" in r.stderr, r.stderr


def test_gc_that_deletes_nothing_keeps_existence_caches_valid(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write_tree(src, 5, 0)
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        store.push(snapshot(src, hash_cache=False), src, farm_id="f", queue_id="q")
        before = run_sync(read_epoch(store.aio.backend))
        assert store.gc(delete=True, grace_seconds=0).unreferenced == ()
        assert run_sync(read_epoch(store.aio.backend)) == before
        store.put_bytes(b"orphan")
        assert len(store.gc(delete=True, grace_seconds=0).unreferenced) == 1
        assert run_sync(read_epoch(store.aio.backend)) != before
