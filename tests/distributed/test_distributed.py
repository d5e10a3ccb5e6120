"""Scale-out on a real Dask LocalCluster (2 worker processes) and on process pools: the bytes one machine
would produce, work on both workers, a worker killed mid-run, the CLI's --scheduler and --processes."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fscas
from fscas import distributed
from fscas.conformance.faults import FaultProxy
from fscas.conformance.plugin import unique_bucket
from fscas.manifests import encode, snapshot


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as c, Client(c) as client:
        yield client


def _tree(root: Path, n: int = 400, seed: int = 3) -> Path:
    rng = random.Random(seed)
    for i in range(n):
        path = root / f"folder{i % 13}" / f"sub{i % 4}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(0, 30_000)))
    (root / "one big.bin").write_bytes(os.urandom(5 * 2**20))
    (root / "scène").mkdir()
    (root / "scène" / "日本.txt").write_bytes(b"non-ASCII")
    return root


def test_plan_shards_balances_and_keeps_folders_together() -> None:
    files = [(f"a/{i:03d}", 100) for i in range(100)] + [(f"b/{i:03d}", 100) for i in range(10)]
    files += [("c/huge", 10**6)] + [(f"d/{i:04d}", 10) for i in range(1000)]
    plan = distributed.plan_shards(files, 4)
    assert sorted(p for shard in plan for p in shard) == sorted(p for p, _ in files)  # each path once
    assert ["c/huge"] in plan  # a file larger than a shard's share is alone
    assert any(set(s) == {f"b/{i:03d}" for i in range(10)} or {f"b/{i:03d}" for i in range(10)} <= set(s)
               for s in plan)  # a small folder stays together
    d_shards = [s for s in plan if any(p.startswith("d/") for p in s)]
    assert len(d_shards) > 1  # the 1,000-file folder is split by name range...
    for s in d_shards:
        names = [p for p in s if p.startswith("d/")]
        assert names == sorted(names) and len(s) < 800  # ...into contiguous ranges


def test_dask_push_snapshot_pull_equal_one_machine(cluster: Any, moto_server: Any, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    one = encode(snapshot(src, hash_cache=False))
    assert encode(distributed.snapshot(src, client=cluster)) == one
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    url = moto_server.store_url(bucket, "root")
    key, digest, summary = distributed.push(src, url, farm_id="f", queue_id="q", client=cluster,
                                            **moto_server.options())
    assert summary.workers == 2 and len({r.worker for r in summary.shards}) == 2  # both workers did work
    assert summary.files == len({p.hash for p in snapshot(src, hash_cache=False).paths})
    with fscas.open_store(url, existence_cache=False, **moto_server.options()) as store:
        stored = store.get_manifest(key)
        assert encode(stored) == one and fscas.manifest_hash(encode(stored)) == digest
        assert store.verify([stored]).ok
    pulled = distributed.pull(key, tmp_path / "dst", url, client=cluster, **moto_server.options())
    assert pulled.workers == 2 and pulled.files == len(stored.paths)
    for p in stored.paths:
        assert (tmp_path / "dst" / p.path).read_bytes() == (src / p.path).read_bytes()
        assert (tmp_path / "dst" / p.path).stat().st_mtime_ns // 1000 == p.mtime


def test_dask_copy_equals_one_machine(cluster: Any, moto_server: Any, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", n=200)
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    with fscas.open_store(tmp_path / "a") as a:
        a.push_folder(src, farm_id="f", queue_id="q")
    one = fscas.copy(tmp_path / "a", tmp_path / "one", everything=True)
    with fscas.open_store(tmp_path / "a") as a, \
            fscas.open_store(moto_server.store_url(bucket, "root"), **moto_server.options()) as two:
        spread = a.copy_to(two, everything=True, client=cluster)
        assert spread.workers == 2 and spread.manifests == one.manifests and spread.objects == one.objects > 200
        assert spread.bytes == one.bytes and spread.ok
        with fscas.open_store(tmp_path / "one") as first:
            assert {o.key for o in fscas.runner.run_sync(_listed(two.aio))} == {
                o.key for o in fscas.runner.run_sync(_listed(first.aio))}
            for key in one.manifests:
                assert fscas.encode(two.get_manifest(key)) == fscas.encode(first.get_manifest(key))
        assert two.verify().ok


async def _listed(store: Any) -> list[Any]:
    return [o async for o in store.backend.list("") if not o.key.startswith(".")]


def test_a_worker_killed_mid_push_still_gives_the_exact_result(cluster: Any, seaweedfs: Any, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", n=600, seed=5)
    bucket = unique_bucket()
    seaweedfs.create_bucket(bucket)
    with FaultProxy(seaweedfs.endpoint, rate=1.0, kinds=("delay",), delay=0.02) as slow:
        url = f"s3://{bucket}/root?endpoint_url={slow.url}"
        pids = cluster.run(os.getpid)  # worker address -> pid
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["push"] = distributed.push(src, url, farm_id="f", queue_id="q", client=cluster, shards=12,
                                                  **seaweedfs.options())
            except BaseException as e:  # reported below
                result["error"] = e

        pusher = threading.Thread(target=run)
        pusher.start()
        listing = seaweedfs._client()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill once uploads are under way
            if listing.list_objects_v2(Bucket=bucket, Prefix="root/Data/").get("KeyCount", 0) >= 20:
                break
            time.sleep(0.05)
        victim = sorted(pids.values())[0]
        os.kill(victim, 9)
        pusher.join(300)
    assert not pusher.is_alive() and "error" not in result, result.get("error")
    key, _, _ = result["push"]
    direct = seaweedfs.store_url(bucket, "root")
    with fscas.open_store(direct, existence_cache=False, **seaweedfs.options()) as store:
        stored = store.get_manifest(key)
        assert encode(stored) == encode(snapshot(src, hash_cache=False))
        assert store.verify([stored]).ok
    cluster.wait_for_workers(2, timeout=60)  # the nanny brought the worker back


def test_a_shard_that_fails_for_good_writes_no_manifest(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", n=50)
    store = tmp_path / "store"
    store.mkdir()
    (store / "Data").write_text("a file where the objects' folder should be")  # every shard's writes fail
    with distributed.process_pool(2) as pool, pytest.raises(fscas.StoreError):
        distributed.push(src, str(store), farm_id="f", queue_id="q", executor=pool)
    assert not (store / "Manifests").exists()


def test_cli_scheduler_and_processes(cluster: Any, tmp_path: Path) -> None:
    from cli_runner import run_fscas

    src = _tree(tmp_path / "src", n=120)
    address = cluster.scheduler.address
    store = str(tmp_path / "store")
    r = run_fscas("push", str(src), "--store", store, "--scheduler", address, "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    pushed = json.loads(r.stdout)
    assert pushed["workers"] == 2 and len(pushed["shards"]) >= 2
    r = run_fscas("pull", pushed["key"], str(tmp_path / "dst"), "--store", store, "--processes", "2", "--json",
                  home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"] == pushed["total_files"] == 122
    r = run_fscas("manifest", "snapshot", str(src), "--processes", "2", "-o", str(tmp_path / "m"), home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m").read_bytes() == encode(snapshot(src, hash_cache=False))
