"""Store operations on every backend: file, memory, moto, SeaweedFS, fake-gcs-server, Azurite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import fscas
from fscas.manifests import EMPTY_HASH, hash_bytes, snapshot
from fscas.runner import run_sync


def _tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha\n",
        "empty": b"",
        "dir/nested/b.bin": bytes(range(256)) * 40,
        "dir/dup.txt": b"alpha\n",  # same content as a.txt: stored once
        "scène/ファイル.txt": b"non-ASCII names",
        "big.bin": os.urandom(17 * 2**20 + 5),  # > one 16 MiB part: multipart/ranged paths
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_objects_by_digest(store: fscas.Store, tmp_path: Path) -> None:
    digest = store.put_bytes(b"hello")
    assert digest == hash_bytes(b"hello")
    assert store.has(digest) and not store.has("0" * 32)
    assert store.get_bytes(digest) == b"hello"
    assert store.put_bytes(b"") == EMPTY_HASH and store.get_bytes(EMPTY_HASH) == b""
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 1000)
    fd = store.put_file(src)
    store.get_file(fd, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == b"x" * 1000
    with store.open(fd) as f:
        assert f.read() == b"x" * 1000
    with pytest.raises(fscas.ObjectNotFound):
        store.get_bytes("1" * 32)


def test_upload_download_round_trip(store: fscas.Store, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = _tree(src)
    m = snapshot(src, hash_cache=False)
    first = store.upload(m, src)
    assert first.files == len(files) - 1 and first.skipped_files == 1  # dup.txt shares a.txt's object
    again = store.upload(m, src)
    assert again.files == 0 and again.skipped_files == len(files)
    got = store.download(m, dst)
    assert got.files == len(files)
    for p in m.paths:
        out = dst / p.path
        assert out.read_bytes() == files[p.path]
        assert os.stat(out).st_mtime_ns // 1000 == p.mtime
    assert not [n for n in os.listdir(dst) if n.endswith(".partial")]


def test_reupload_without_cache_asks_the_server(store: fscas.Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    m = snapshot(src, hash_cache=False)
    store.upload(m, src)
    summary = store.upload(m, src, use_cache=False)
    assert summary.files == 0


def test_an_upload_does_not_trust_the_cache_of_a_store_emptied_by_hand(tmp_path: Path) -> None:
    """The store folder deleted and made again at the same path: the existence cache still names its
    objects. A bare upload (no manifest commit) samples what the cache vouched for, finds it gone and
    uploads again, so a download that follows has every object."""
    import shutil

    from fscas.existence import ExistenceCache

    src = tmp_path / "src"
    files = _tree(src)
    m = snapshot(src, hash_cache=False)
    cache = ExistenceCache(tmp_path / "existence.db")
    for round_ in range(2):
        with fscas.Store(fscas.AsyncStore(fscas.backends.open_backend(str(tmp_path / "store")),
                                          existence_cache=cache)) as store:
            store.upload(m, src)
            store.download(m, tmp_path / f"dst{round_}")
        assert {p.path: (tmp_path / f"dst{round_}" / p.path).read_bytes() for p in m.paths} == files
        shutil.rmtree(tmp_path / "store")


def test_changed_file_is_never_stored_under_its_old_hash(store: fscas.Store, tmp_path: Path) -> None:
    # Deadline D1: same size, mtime restored, different bytes: the stale hash must not get them.
    src = tmp_path / "src"
    _tree(src)
    m = snapshot(src, hash_cache=False)
    for rel in ("a.txt", "big.bin"):
        path = src / rel
        st = path.stat()
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(fscas.IntegrityError, match="changed since its snapshot"):
        store.upload(m, src)
    for rel in ("a.txt", "big.bin"):
        entry = next(p for p in m.paths if p.path == rel)
        assert not store.has(entry.hash)


def test_corrupt_object_is_refused_on_download(store: fscas.Store, tmp_path: Path) -> None:
    good = b"good bytes"
    digest = hash_bytes(good)
    run_sync(store.aio.backend.put(f"Data/{digest}.xxh128", b"evil bytes"))
    m = fscas.Manifest.from_paths([fscas.ManifestPath(path="f.txt", hash=digest, size=len(good), mtime=0)])
    with pytest.raises(fscas.IntegrityError, match=f"Data/{digest}.xxh128"):
        store.download(m, tmp_path / "dst")
    assert os.listdir(tmp_path / "dst") == []
    with pytest.raises(fscas.IntegrityError):
        store.get_bytes(digest)


def test_legacy_key_is_read_as_a_fallback(store: fscas.Store, tmp_path: Path) -> None:
    data = b"written before PR #167"
    digest = hash_bytes(data)
    run_sync(store.aio.backend.put(f"Data/{digest}", data))
    assert store.get_bytes(digest) == data
    m = fscas.Manifest.from_paths([fscas.ManifestPath(path="old.txt", hash=digest, size=len(data), mtime=0)])
    store.download(m, tmp_path / "dst")
    assert (tmp_path / "dst" / "old.txt").read_bytes() == data


def test_push_then_pull_by_key(store: fscas.Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = _tree(src)
    m = snapshot(src, hash_cache=False)
    key, digest, _ = store.push(m, src, farm_id="farm-1", queue_id="queue-1")
    assert key.startswith("Manifests/farm-1/queue-1/Inputs/") and key.endswith(
        f"/{hash_bytes(str(src).encode())}_input")
    assert fscas.manifest_hash(fscas.encode(store.get_manifest(key))) == digest
    store.download(store.get_manifest(key), tmp_path / "dst")
    assert (tmp_path / "dst" / "big.bin").read_bytes() == files["big.bin"]


def test_output_manifests_carry_deadline_metadata(store: fscas.Store, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "renders").mkdir(parents=True)
    (out / "renders" / "f1.exr").write_bytes(b"frame")
    m = snapshot(out, hash_cache=False)
    ids = dict(farm_id="farm-1", queue_id="queue-1", job_id="job-1", step_id="step-1", task_id="task-1")
    keys = [store.put_output(m, str(out), **ids, session_action_id=f"sessionaction-{n}",
                             start_time=1700000050.25 + n)[0] for n in range(2)]
    assert keys[0].startswith("Manifests/farm-1/queue-1/job-1/step-1/task-1/2023-11-14T22:14:10.250000Z_sessionaction-0/")
    outs = store.output_manifests("farm-1", "queue-1", "job-1")
    assert sorted(o.key for o in outs) == sorted(keys)
    assert {o.asset_root for o in outs} == {str(out)}
    assert fscas.aggregate_outputs(outs) == {str(out): store.get_manifest(keys[1])}
    meta = run_sync(store.aio.backend.head(outs[0].key)).metadata
    assert meta["asset-root"] == str(out)


def test_non_ascii_asset_root_round_trips(store: fscas.Store, tmp_path: Path) -> None:
    from fscas.keys import asset_root_from_metadata, output_metadata

    root = "/projects/scène/日本"
    m = fscas.Manifest.from_paths([fscas.ManifestPath(path="x", hash=EMPTY_HASH, size=0, mtime=0)])
    key = "Manifests/f/q/j/step-1/task-1/2023-11-14T22:14:10.250000Z_sa/abc_output"
    store.put_manifest(key, m, metadata=output_metadata(root, "ProjectFiles"))
    meta = dict(run_sync(store.aio.backend.head(key)).metadata)
    assert meta["asset-root-json"] == '"/projects/sc\\u00e8ne/\\u65e5\\u672c"'
    assert meta["file-system-location-name"] == "ProjectFiles"
    assert asset_root_from_metadata(meta, key) == root


def test_gc_lists_then_deletes_only_unreferenced(store: fscas.Store, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src).mkdir()
    (src / "kept.txt").write_bytes(b"kept")
    m = snapshot(src, hash_cache=False)
    store.push(m, src, farm_id="f", queue_id="q")
    orphan = store.put_bytes(b"orphan")
    assert store.gc(grace_seconds=3600).unreferenced == ()  # too young to collect
    report = store.gc(grace_seconds=0)
    assert report.unreferenced == (f"Data/{orphan}.xxh128",) and not report.deleted
    assert store.has(orphan)
    assert store.gc(grace_seconds=0, delete=True).deleted
    assert not store.has(orphan) and store.has(m.paths[0].hash)


def test_gc_elsewhere_invalidates_existence_caches(store: fscas.Store, tmp_path: Path) -> None:
    # Another client's gc deleted an object this client's cache remembers; the store epoch it
    # bumped makes the next push ask the server instead of writing a manifest over a hole.
    from fscas.existence import ExistenceCache

    src = tmp_path / "src"
    src.mkdir()
    for i in range(50):
        (src / f"f{i}").write_bytes(b"file %d" % i)
    store.push(snapshot(src, hash_cache=False), src, farm_id="f", queue_id="q")
    orphan = store.put_bytes(b"collected elsewhere")  # cached, but referenced by no manifest
    other = fscas.Store(fscas.AsyncStore(store.aio.backend, existence_cache=ExistenceCache(tmp_path / "other.db")))
    assert other.gc(grace_seconds=0, delete=True).unreferenced == (f"Data/{orphan}.xxh128",)
    (src / "back.bin").write_bytes(b"collected elsewhere")
    m = snapshot(src, hash_cache=False)
    store.push(m, src, farm_id="f", queue_id="q")
    assert store.has(orphan) and store.verify([m]).ok
