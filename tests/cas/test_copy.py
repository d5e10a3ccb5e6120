"""Store to store (`fscas copy`): byte-identical manifests, verified objects, metadata mapped per backend,
nothing sent twice, a bad source object refused by key, resumable after kill -9, safe beside gc."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from cli_runner import run_fscas
from deadline.job_attachments.asset_manifests.decode import decode_manifest
from deadline.job_attachments.download import download_files_from_manifests
from deadline.job_attachments.models import FileConflictResolution
from stores import counted_calls, store_url_for

import fscas
from fscas import keys

CHAIN = ["moto", "azure", "gcs", "file", "seaweedfs"]
IDS = {"farm_id": "farm-1", "queue_id": "queue-1"}
OUT_IDS = {**IDS, "job_id": "job-1", "step_id": "step-1", "task_id": "task-1", "start_time": 1700000000.25}


def _tree(root: Path, n: int = 40, big: int = 0, seed: int = 0) -> dict[str, bytes]:
    files = {f"d{i % 4}/f{i}.bin": (b"%d-%d " % (seed, i)) * (i + 1) for i in range(n)}
    files |= {"scène/日本.txt": b"non-ASCII", "empty": b""}
    if big:
        files["big.bin"] = os.urandom(big)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _open(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> fscas.Store:
    url, options = store_url_for(kind, request, tmp_path)
    return fscas.open_store(url, **options)


def _raw(store: fscas.Store, key: str) -> tuple[bytes, dict[str, str]]:
    backend = store.aio.backend
    return _run(backend.get(key)), dict(_run(backend.head(key)).metadata)


def _run(coro: Any) -> Any:
    from fscas.runner import run_sync

    return run_sync(coro)


def test_a_chain_of_five_backends_keeps_every_byte(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    files = _tree(src, big=17 * 2**20)  # one object past the part size: streamed part by part on every hop
    stores = [_open(kind, request, tmp_path / kind) for kind in CHAIN]
    try:
        first = stores[0]
        m, in_key, _, _ = first.push_folder(src, **IDS)
        out_keys = [first.put_output(m, src, session_action_id=f"sessionaction-{i}", source_root=root, **OUT_IDS)[0]
                    for i, root in enumerate(["/mnt/out", "/mnt/sortie é"])]
        wanted = sorted([in_key, *out_keys])
        originals = {key: _raw(first, key) for key in wanted}
        assert originals[out_keys[1]][1]["asset-root-json"]  # the non-ASCII root's metadata travels too
        for a, b in itertools.pairwise(stores):
            summary = a.copy_to(b, everything=True)
            assert summary.ok and sorted(summary.manifests) == wanted, (a.url, b.url, summary)
            assert summary.objects == len({p.hash for p in m.paths}) and summary.bad_objects == ()
            for key in wanted:
                assert _raw(b, key) == originals[key], f"{b.url}: {key} differs from the source"
            assert b.verify().ok
        last = stores[-1]
        calls = [counted_calls(s.aio) for s in stores[-2:]]
        again = stores[-2].copy_to(last, everything=True)
        assert again.manifests == () and again.objects == 0 and again.unchanged == len(wanted)
        assert all(set(c) == {"list"} for c in calls), calls  # listings only: nothing read, HEADed or written

        seaweed = request.getfixturevalue("seaweedfs")
        bucket = last.url.split("/")[2]
        session = boto3.Session(aws_access_key_id=seaweed.access_key, aws_secret_access_key=seaweed.secret_key,
                                region_name="us-east-1")
        os.environ["AWS_ENDPOINT_URL"] = seaweed.endpoint
        try:
            dest = tmp_path / "deadline"
            raw, _ = _raw(last, in_key)
            download_files_from_manifests(bucket, {str(dest): decode_manifest(raw.decode())},
                                          cas_prefix="root/prefix/Data", session=session,
                                          conflict_resolution=FileConflictResolution.OVERWRITE)
        finally:
            del os.environ["AWS_ENDPOINT_URL"]
        for rel, data in files.items():
            assert (dest / rel).read_bytes() == data, rel
    finally:
        for s in stores:
            s.close()


def _corrupt(store_dir: Path, digest: str, size: int) -> None:
    path = store_dir / keys.data_key(digest)
    path.write_bytes(b"x" * size)


def test_a_corrupt_source_object_is_refused_by_key_and_the_rest_copies(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    _tree(good, seed=1)
    _tree(bad, n=5, big=17 * 2**20, seed=2)
    with fscas.open_store(tmp_path / "a") as a:
        _, good_key, _, _ = a.push_folder(good, **IDS)
        mb, bad_key, _, _ = a.push_folder(bad, **IDS)
    small = next(p for p in mb.paths if p.path == "d1/f1.bin")
    huge = next(p for p in mb.paths if p.path == "big.bin")
    _corrupt(tmp_path / "a", small.hash, small.size)
    _corrupt(tmp_path / "a", huge.hash, huge.size)  # streamed: the destination must abort it, not commit it
    r = run_fscas("copy", str(tmp_path / "a"), str(tmp_path / "b"), "--all", home=tmp_path)
    assert r.returncode == 1, r.stderr
    assert f"source object {keys.data_key(small.hash)}" in r.stderr and keys.data_key(huge.hash) in r.stderr
    assert f"manifest not copied: {bad_key}" in r.stderr
    assert r.stdout.split() == [good_key]
    assert not (tmp_path / "b" / keys.data_key(small.hash)).exists()
    assert not (tmp_path / "b" / keys.data_key(huge.hash)).exists()
    with fscas.open_store(tmp_path / "b") as b:
        assert [m.key for m in b.manifests()] == [good_key] and b.verify().ok
        assert b.has(next(p.hash for p in mb.paths if p.path == "d0/f0.bin"))  # its sound objects did copy


def _source(tmp_path: Path, trees: int, files: int, seed: int) -> list[str]:
    """A folder store `a` with `trees` pushed trees of `files` files each; their manifest keys."""
    with fscas.open_store(tmp_path / "a") as a:
        for i in range(trees):
            _tree(tmp_path / f"t{i}", n=files, seed=seed + i)
            a.push_folder(tmp_path / f"t{i}", **IDS)
        return sorted(m.key for m in a.manifests())


def test_kill_9_mid_copy_then_rerun_completes(tmp_path: Path) -> None:
    wanted = _source(tmp_path, 6, 400, 10)
    dst = tmp_path / "b"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    child = subprocess.Popen([sys.executable, "-m", "fscas", "copy", str(tmp_path / "a"), str(dst), "--all",
                              "--concurrency", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        if (dst / "Data").is_dir() and sum(1 for _ in os.scandir(dst / "Data")) >= 300:
            break
        time.sleep(0.01)
    assert child.poll() is None, "the copy ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    with fscas.open_store(dst, existence_cache=False) as b:
        visible = [m.key for m in b.manifests()]
        assert len(visible) < len(wanted)
        for key in visible:  # a manifest visible at the kill names only objects that are there
            assert b.verify([b.get_manifest(key)]).ok, key
    r = subprocess.run([sys.executable, "-m", "fscas", "copy", str(tmp_path / "a"), str(dst), "--all", "--json"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with fscas.open_store(dst, existence_cache=False) as b:
        assert sorted(m.key for m in b.manifests()) == wanted and b.verify().ok


GC_LOOP = r"""
import os, sys, fscas
store = fscas.open_store(sys.argv[1], existence_cache=False)
print("started", flush=True)
runs = deleted = 0
while not os.path.exists(sys.argv[2]):
    report = store.gc(delete=True, grace_seconds=0, lease=5)
    runs, deleted = runs + 1, deleted + len(report.unreferenced)
print(runs, deleted, flush=True)
"""


def test_a_copy_racing_gc_delete_on_the_destination_loses_nothing(tmp_path: Path) -> None:
    source_keys = _source(tmp_path, 2, 300, 20)
    dst = tmp_path / "b"
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "x").write_bytes(b"seed")
    with fscas.open_store(dst) as b:
        b.push_folder(tmp_path / "seed", **IDS)  # the store exists (and has an epoch) before gc starts
    stop = tmp_path / "stop"
    gc = subprocess.Popen([sys.executable, "-c", GC_LOOP, str(dst), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        assert gc.stdout is not None and gc.stdout.readline().strip() == "started"
        for key in source_keys:
            summary = fscas.copy(tmp_path / "a", dst, manifests=[key])
            assert summary.manifests == (key,)
            with fscas.open_store(dst, existence_cache=False) as fresh:
                assert fresh.verify([fresh.get_manifest(key)]).ok, f"{key}: objects missing after the copy returned"
    finally:
        stop.touch()
        out, _ = gc.communicate(timeout=120)
    runs, _ = (int(x) for x in out.split())
    assert gc.returncode == 0 and runs > 0
    with fscas.open_store(dst, existence_cache=False) as b:
        assert b.verify().ok and set(source_keys) <= {m.key for m in b.manifests()}


def test_selection_dry_run_and_since(tmp_path: Path) -> None:
    src = tmp_path / "t"
    _tree(src, n=5)
    with fscas.open_store(tmp_path / "a") as a:
        m, in_key, _, _ = a.push_folder(src, **IDS)
        out_key, _ = a.put_output(m, src, session_action_id="sessionaction-1", **OUT_IDS)
        other, _ = a.put_output(m, src, session_action_id="sessionaction-2", **{**OUT_IDS, "job_id": "job-2"})
        with fscas.open_store(tmp_path / "b") as b:
            dry = a.copy_to(b, farm_id="farm-1", queue_id="queue-1", dry_run=True)
            assert dry.dry_run and sorted(dry.manifests) == sorted([in_key, out_key, other]) and dry.objects == 7
            assert not (tmp_path / "b").exists() or not any((tmp_path / "b").rglob("*_output"))
            assert a.copy_to(b, farm_id="farm-1", queue_id="queue-1", job_id="job-1").manifests == (out_key,)
            assert a.copy_to(b, farm_id="farm-1", queue_id="queue-1", kind="input").manifests == (in_key,)
            state = tmp_path / "state.json"
            first = a.copy_to(b, everything=True, since=str(state))
            assert first.manifests == (other,) and first.unchanged == 2
            calls = counted_calls(b.aio)
            assert a.copy_to(b, everything=True, since=str(state)).unchanged == 3
            assert "list" not in calls and not calls  # the state answered: the destination was not asked
    with pytest.raises(fscas.ConfigError, match="same store"):
        fscas.copy(tmp_path / "a", tmp_path / "a", everything=True)


def test_cli_errors_name_the_side(moto_server: Any, tmp_path: Path) -> None:
    from fscas.conformance.plugin import unique_bucket

    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    src = tmp_path / "t"
    _tree(src, n=3)
    with fscas.open_store(tmp_path / "a") as a:
        a.push_folder(src, **IDS)
    url = f"s3://{bucket}/p?endpoint_url={moto_server.endpoint}&key=fscas&secret=hunter2secret"
    r = run_fscas("copy", str(tmp_path / "a"), url.replace(bucket, "no-such-bucket-x1"), "--all", home=tmp_path)
    assert r.returncode == 1 and "destination s3://no-such-bucket-x1" in r.stderr and "hunter2" not in r.stderr
    r = run_fscas("copy", url, str(tmp_path / "c"), "--manifest", "Manifests/f/q/x_input", home=tmp_path)
    assert r.returncode == 1 and "source s3://" in r.stderr and "no such manifest" in r.stderr, r.stderr
    assert "hunter2" not in r.stderr
    r = run_fscas("copy", url, url.replace("/p?", "/p/q?"), "--all", home=tmp_path)
    assert r.returncode == 2 and "overlapping stores" in r.stderr and "hunter2" not in r.stderr
