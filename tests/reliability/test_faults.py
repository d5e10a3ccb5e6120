"""Transfers through a fault-injecting proxy, a killed uploader and restarted servers: nothing lost."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import fscas
from fscas.conformance.emulators import AZURITE_ACCOUNT, AZURITE_KEY, MotoEmulator, SeaweedFSEmulator
from fscas.conformance.faults import FaultProxy
from fscas.conformance.plugin import unique_bucket
from fscas.errors import FscasError
from fscas.existence import ExistenceCache
from fscas.manifests import snapshot
from fscas.runner import run_sync


def _tree(root: Path, small: int = 60, big: int = 17 * 2**20 + 3) -> fscas.Manifest:
    for i in range(small):
        (root / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 5}" / f"f{i}.bin").write_bytes(os.urandom(1000 + i * 37))
    (root / "big.bin").write_bytes(os.urandom(big))
    return snapshot(root, hash_cache=False)


def _until_done(action: Any, limit: int = 8) -> tuple[int, int]:
    """Run `action` until it succeeds; every failure must be a clear fscas error. (runs, failures)"""
    failures = 0
    for run in range(1, limit + 1):
        try:
            action()
            return run, failures
        except FscasError as e:
            failures += 1
            assert "Traceback" not in str(e)
    raise AssertionError(f"still failing after {limit} runs")


def _no_partials(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.name.endswith(".partial") or p.name.startswith(".fscas-")]


def _range_start(head: bytes) -> int:
    """Where a request head's `Range: bytes=N-` starts (0 without one)."""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"range", b"x-ms-range"):
            return int(value.strip().removeprefix(b"bytes=").partition(b"-")[0])
    return 0


def test_upload_and_download_through_ten_percent_faults(moto_server: Any, tmp_path: Path, record: Any) -> None:
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    src, dst = tmp_path / "src", tmp_path / "dst"
    m = _tree(src)
    opts = moto_server.options()
    with FaultProxy(moto_server.endpoint, rate=0.1, seed=11, stall=1.0) as proxy:
        flaky = fscas.open_store(f"s3://{bucket}/root?endpoint_url={proxy.url}",
                                 existence_cache=ExistenceCache(tmp_path / "e.db"), **opts)
        up_runs, up_fail = _until_done(lambda: flaky.push(m, src, farm_id="f", queue_id="q"))
        down_runs, down_fail = _until_done(lambda: flaky.download(m, dst))
        flaky.close()
        injected = sum(proxy.injected.values())
    assert injected > 0
    with fscas.open_store(f"s3://{bucket}/root?endpoint_url={moto_server.endpoint}", existence_cache=False,
                          **opts) as direct:
        report = direct.verify(None)  # every Data object's bytes match its name
        assert report.ok and report.checked == len({p.hash for p in m.paths})
    for p in m.paths:
        assert (dst / p.path).read_bytes() == (src / p.path).read_bytes()
    _no_partials(dst)
    record("S3 (moto) push + download, 10 % faults (503, reset, delay, stall)", faults=injected,
           runs=up_runs + down_runs, failures=up_fail + down_fail, lost=0)


def _through(kind: str, emulator: Any, bucket: str, endpoint: str) -> tuple[str, dict[str, Any]]:
    """A store URL and options reaching `bucket` on `emulator` at `endpoint` (a proxy's, or its own)."""
    if kind == "fake_gcs":
        return f"gs://{bucket}/root?endpoint_url={endpoint}&token=anon", {}
    if kind == "azurite":
        return (f"az://{bucket}/root?endpoint_url={endpoint}/{AZURITE_ACCOUNT}",
                {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})
    return f"s3://{bucket}/root?endpoint_url={endpoint}", emulator.options()


@pytest.mark.parametrize("kind", ["moto", "azurite", "fake_gcs"])
def test_a_broken_download_stream_resumes_where_it_stopped(kind: str, request: Any, tmp_path: Path,
                                                            record: Any) -> None:
    emulator = request.getfixturevalue("moto_server" if kind == "moto" else kind)
    bucket = unique_bucket()
    emulator.create_bucket(bucket)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(20 * 2**20 + 11))  # above PART: one streamed GET
    m = snapshot(src, hash_cache=False)
    url, opts = _through(kind, emulator, bucket, emulator.endpoint)
    with fscas.open_store(url, existence_cache=False, **opts) as direct:
        direct.upload(m, src)
    # The answers of the first three GETs break off after at most 9 MiB (a reset may also drop what sat in
    # the socket buffers). Resumed, each later GET asks from a further offset; started over, from 0 again.
    with FaultProxy(emulator.endpoint, rate=1.0, kinds=("reset",), reset_after=9 * 2**20, max_faults=3) as proxy, \
            fscas.open_store(_through(kind, emulator, bucket, proxy.url)[0], existence_cache=False, **opts) as flaky:
        flaky.download(m, dst)
        starts = [_range_start(h) for h in proxy.heads if h.startswith(b"GET ")]
    assert (dst / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    assert len(starts) >= 2 and starts[0] == 0, starts
    assert all(b > a for a, b in itertools.pairwise(starts)), \
        f"GETs from offsets {starts}: a broken stream must resume from the bytes written, not start over"
    _no_partials(dst)
    record(f"download stream reset mid-body, three times (20 MiB object, {kind})", faults=3, runs=1, failures=0, lost=0,
           note="resumed from the last byte written")


UPLOADER = r"""
import sys, fscas
from fscas.manifests import decode
store = fscas.open_store(sys.argv[1], key="fscas", secret="fscas")
print("started", flush=True)
store.push(decode(open(sys.argv[2], "rb").read()), sys.argv[3], farm_id="f", queue_id="q")
print("finished", flush=True)
"""


def test_kill_9_mid_upload_then_rerun(moto_server: Any, tmp_path: Path, record: Any) -> None:
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    src = tmp_path / "src"
    m = _tree(src, small=400)
    (tmp_path / "m").write_bytes(fscas.encode(m))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    listing = moto_server._client()
    with FaultProxy(moto_server.endpoint, rate=1.0, kinds=("delay",), delay=0.2) as slow:
        url = f"s3://{bucket}/root?endpoint_url={slow.url}"
        p = subprocess.Popen([sys.executable, "-c", UPLOADER, url, str(tmp_path / "m"), str(src)], env=env,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill once the first objects are on the server, not after a guess
            if listing.list_objects_v2(Bucket=bucket, Prefix="root/Data/").get("KeyCount", 0) >= 10:
                break
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    cache = ExistenceCache(tmp_path / "cache" / "fscas" / "existence.db")
    url = f"s3://{bucket}/root?endpoint_url={moto_server.endpoint}"
    with fscas.open_store(url, existence_cache=cache, **moto_server.options()) as store:
        cached = cache.present(store.url.replace(moto_server.endpoint, slow.url))
        uploaded_before = len({p.hash for p in m.paths}) - len(store.missing([p.hash for p in m.paths],
                                                                              use_cache=False))
        assert 0 < uploaded_before < len({p.hash for p in m.paths}), "the kill did not land mid-upload"
        for key in cached:  # what the killed process cached, the server holds
            run_sync(store.aio.backend.head(key))
        summary = store.upload(m, src)
        assert summary.files == len({p.hash for p in m.paths}) - uploaded_before  # only what was missing
        assert store.verify([m]).ok
    record("kill -9 of the uploader mid-run, then re-run", faults=1, runs=2, failures=1, lost=0,
           note=f"{uploaded_before} objects were up before the kill; the re-run sent only the rest")


@pytest.mark.parametrize("kind", ["seaweedfs", "moto"])
def test_server_restart_mid_upload(kind: str, tmp_path: Path, record: Any) -> None:
    emulator = (SeaweedFSEmulator if kind == "seaweedfs" else MotoEmulator)().start()
    try:
        emulator.create_bucket("restarted")
        src = tmp_path / "src"
        m = _tree(src, small=300, big=40 * 2**20)
        url = emulator.store_url("restarted", "root")
        cache = ExistenceCache(tmp_path / "e.db")
        outcome: list[BaseException | None] = []

        def upload() -> None:
            try:
                with fscas.open_store(url, existence_cache=cache, **emulator.options()) as store:
                    store.push(m, src, farm_id="f", queue_id="q")
                outcome.append(None)
            except BaseException as e:
                outcome.append(e)

        t = threading.Thread(target=upload)
        t.start()
        time.sleep(0.8)
        emulator.restart()
        t.join(120)
        first = outcome[0]
        assert first is None or isinstance(first, FscasError), repr(first)
        if kind == "moto":
            emulator.create_bucket("restarted")  # moto keeps nothing across a restart
        with fscas.open_store(url, existence_cache=cache, **emulator.options()) as store:
            store.push(m, src, farm_id="f", queue_id="q")  # the stale cache is caught by the sample
            report = store.verify([m])
            assert report.ok, report
    finally:
        emulator.stop()
    record(f"{kind} restarted mid-push, then re-run", faults=1, runs=2, failures=int(first is not None), lost=0,
           note="first run: " + (type(first).__name__ if first else "completed"))


PUSHER = r"""
import sys, fscas
from fscas.manifests import snapshot
store = fscas.open_store(sys.argv[1], key="fscas", secret="fscas")
m = snapshot(sys.argv[2])
store.push(m, sys.argv[2], farm_id="f", queue_id="q")
"""


def test_two_processes_push_overlapping_trees(moto_server: Any, tmp_path: Path, record: Any) -> None:
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    a, b = tmp_path / "a", tmp_path / "b"
    _tree(a, small=200, big=2**20)
    b.mkdir()
    for p in sorted(a.rglob("*"))[::2]:  # half the files shared
        if p.is_file():
            (b / p.relative_to(a)).parent.mkdir(parents=True, exist_ok=True)
            (b / p.relative_to(a)).write_bytes(p.read_bytes())
    (b / "own.bin").write_bytes(os.urandom(5000))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "shared-cache")}
    url = f"s3://{bucket}/root?endpoint_url={moto_server.endpoint}"
    procs = [subprocess.Popen([sys.executable, "-c", PUSHER, url, str(root)], env=env, stderr=subprocess.PIPE,
                              text=True) for root in (a, b)]
    errs = [p.communicate(120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert not any("locked" in e for e in errs)
    with fscas.open_store(url, existence_cache=False, **moto_server.options()) as store:
        report = store.verify(None)
        assert report.ok and report.checked >= 200
    record("two processes push overlapping trees, shared caches", faults=0, runs=2, failures=0, lost=0)
