"""Snapshot: equal to Deadline's own hashing, the walk policy, the hash cache, errors."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fscas.manifests.snapshotter as snapshot_mod
from fscas.errors import ConfigError, SnapshotError
from fscas.manifests import HashCache, encode, hash_bytes, snapshot


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "scene.blend": b"blend" * 1000,
        "textures/wood.png": os.urandom(70_000),
        "textures/empty.txt": b"",
        "a b/space name.txt": b"spaces",
        "日本語/ファイル.txt": b"jp",
        "😀_emoji.txt": b"emoji",
        "\ue000_private.txt": b"pua",
        "café.txt": b"nfc",
        "cafe\u0301.txt": b"nfd",
        "big/large.bin": os.urandom(3 << 20),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def test_snapshot_equals_deadline_hashing(tmp_path: Path) -> None:
    from deadline.job_attachments.asset_manifests._create_manifest import _create_manifest_for_single_root

    root = tmp_path / "root"
    files = make_tree(root)
    os.utime(root / "scene.blend", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    dl = _create_manifest_for_single_root(files=[str(root / f) for f in files], root=str(root),
                                          hash_cache_dir=str(tmp_path / "dlcache"))
    ours = snapshot(root, hash_cache=False)
    assert encode(ours) == dl.encode().encode("utf-8")
    assert {p.path: p.hash for p in ours.paths} == {rel: hash_bytes(b) for rel, b in files.items()}


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses undecodable file names")
def test_undecodable_name_becomes_lone_surrogate(tmp_path: Path) -> None:
    os.makedirs(tmp_path / "r")
    with open(os.path.join(os.fsencode(tmp_path / "r"), b"bad\xffname.bin"), "wb") as f:
        f.write(b"x")
    m = snapshot(tmp_path / "r", hash_cache=False)
    assert [p.path for p in m.paths] == ["bad\udcffname.bin"]
    assert b'"path":"bad\\udcffname.bin"' in encode(m)


def test_policy_dotfiles_in_links_out_skipped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text("c")
    (root / ".env").write_text("e")
    (root / "real.txt").write_text("r")
    (tmp_path / "secret.txt").write_text("s")
    (root / "inside-link").symlink_to("real.txt")
    (root / "outside-link").symlink_to(tmp_path / "secret.txt")
    (root / "dotdot-link").symlink_to("../secret.txt")
    (root / "dangling").symlink_to("nope")
    (root / "dirlink").symlink_to(root / ".git")
    os.mkfifo(root / "fifo")
    skipped: dict[str, str] = {}
    m = snapshot(root, hash_cache=False, on_skip=skipped.__setitem__)
    assert sorted(p.path for p in m.paths) == [".env", ".git/config", "inside-link", "real.txt"]
    assert {p.path: p.hash for p in m.paths}["inside-link"] == hash_bytes(b"r")
    assert set(skipped) == {"outside-link", "dotdot-link", "dangling", "dirlink", "fifo"}
    assert "outside" in skipped["outside-link"]


def test_globs_include_exclude_and_prune(tmp_path: Path) -> None:
    for rel in ["a.txt", "b.tmp", "sub/c.txt", "sub/d.tmp", "build/x/e.txt", "deep/er/f.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    def paths(**kw: list[str]) -> list[str]:
        return sorted(p.path for p in snapshot(tmp_path, hash_cache=False, **kw).paths)  # type: ignore[arg-type]
    assert paths(include=["*.txt"]) == ["a.txt"]
    assert paths(include=["**/*.txt"]) == ["a.txt", "build/x/e.txt", "deep/er/f.txt", "sub/c.txt"]
    assert paths(exclude=["**/*.tmp", "build/**"]) == ["a.txt", "deep/er/f.txt", "sub/c.txt"]
    assert paths(include=["sub/**"], exclude=["sub/*.tmp"]) == ["sub/c.txt"]
    assert paths(include=["[ab].*"]) == ["a.txt", "b.tmp"]
    for bad in ["[abc", "a**b", "/abs/*", ""]:
        with pytest.raises(ConfigError, match="invalid glob"):
            snapshot(tmp_path, hash_cache=False, include=[bad])


def test_root_must_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    for root in (tmp_path / "f", tmp_path / "missing"):
        with pytest.raises(SnapshotError, match="not a folder"):
            snapshot(root, hash_cache=False)


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Drop the effective uid when running as root, where chmod 000 does not stop reads."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_unreadable_file_is_a_clear_error() -> None:
    root = Path(tempfile.mkdtemp(prefix="fscas-perm-"))  # world-traversable, unlike pytest's tmp
    try:
        os.chmod(root, 0o755)
        (root / "ok.txt").write_text("ok")
        (root / "locked.txt").write_text("no")
        os.chmod(root / "locked.txt", 0)
        with unprivileged(), pytest.raises(SnapshotError, match=r"locked\.txt.*cannot open"):
            snapshot(root, hash_cache=False)
    finally:
        shutil.rmtree(root)


def test_file_vanishing_before_hashing_is_skipped_and_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "stays").write_text("s")
    (tmp_path / "goes").write_text("g")
    real_walk = snapshot_mod.walk
    def walk_then_delete(*a, **kw):  # type: ignore[no-untyped-def]
        entries = list(real_walk(*a, **kw))
        os.unlink(tmp_path / "goes")
        return iter(entries)
    monkeypatch.setattr(snapshot_mod, "walk", walk_then_delete)
    skipped: dict[str, str] = {}
    m = snapshot(tmp_path, hash_cache=False, on_skip=skipped.__setitem__)
    assert [p.path for p in m.paths] == ["stays"]
    assert skipped == {"goes": "vanished during the snapshot"}


def age(path: Path, seconds: float = 10) -> None:
    """Make a file look old; its ctime stays recent, so callers use a small racy window."""
    t = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(t, t))


def test_cache_hit_then_same_size_change_with_restored_mtime_is_rehashed(tmp_path: Path) -> None:
    """Deadline defect D1: same size, mtime restored; fscas must still see the new bytes."""
    root = tmp_path / "r"
    root.mkdir()
    f = root / "a.txt"
    f.write_bytes(b"AAAA")
    time.sleep(0.05)
    cache = HashCache(tmp_path / "c.db", racy_window_ns=10_000_000)
    first = snapshot(root, hash_cache=cache)
    assert first.paths[0].hash == hash_bytes(b"AAAA")
    assert len(cache.load_under(str(root))) == 1
    st = f.stat()
    time.sleep(0.02)
    f.write_bytes(b"BBBB")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = snapshot(root, hash_cache=cache)
    assert (second.paths[0].mtime, second.paths[0].size) == (first.paths[0].mtime, first.paths[0].size)
    assert second.paths[0].hash == hash_bytes(b"BBBB")


def test_warm_snapshot_reads_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "r"
    make_tree(root)
    time.sleep(0.05)
    cache = HashCache(tmp_path / "c.db", racy_window_ns=10_000_000)
    cold = snapshot(root, hash_cache=cache)
    def no_reads(*a: object, **kw: object) -> None:
        raise AssertionError("a warm snapshot must not read files")
    monkeypatch.setattr(snapshot_mod, "hash_path_reading", no_reads)
    assert encode(snapshot(root, hash_cache=cache)) == encode(cold)


def test_racy_files_are_not_cached(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    (root / "fresh").write_text("x")
    cache = HashCache(tmp_path / "c.db")  # default 2 s window: a file written just now is racy
    snapshot(root, hash_cache=cache)
    assert cache.load_under(str(root)) == {}


def test_corrupt_cache_is_replaced_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "r"
    make_tree(root)
    db = tmp_path / "c.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.warns(RuntimeWarning, match="unreadable"):
        m = snapshot(root, hash_cache=db)
    assert encode(m) == encode(snapshot(root, hash_cache=False))
    assert any(p.name.startswith("c.db.corrupt-") for p in tmp_path.iterdir())
    with sqlite3.connect(db) as conn:
        conn.execute("SELECT count(*) FROM hashes_v1").fetchone()


SNAP = """
import sys, fscas.manifests as m
from fscas.manifests import HashCache
for _ in range(5):
    m.snapshot(sys.argv[1], hash_cache=HashCache(sys.argv[2], racy_window_ns=0))
"""


def test_two_processes_share_one_cache(tmp_path: Path) -> None:
    roots = [tmp_path / "r1", tmp_path / "r2"]
    for r in roots:
        for i in range(300):
            (r / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
            (r / f"d{i % 7}" / f"f{i}").write_bytes(os.urandom(100))
    db = tmp_path / "shared.db"
    procs = [subprocess.Popen([sys.executable, "-c", SNAP, str(r), str(db)], stderr=subprocess.PIPE)
             for r in roots for _ in range(2)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert not any("locked" in e for e in errors)
    cache = HashCache(db)
    assert len(cache.load_under(str(roots[0]))) == 300
    assert len(cache.load_under(str(roots[1]))) == 300


def test_file_swapped_for_an_outside_link_after_the_walk_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "r"
    root.mkdir()
    (root / "f").write_text("inside")
    (tmp_path / "secret").write_text("outside")
    real_walk = snapshot_mod.walk
    def walk_then_swap(*a, **kw):  # type: ignore[no-untyped-def]
        entries = list(real_walk(*a, **kw))
        (root / "f").unlink()
        (root / "f").symlink_to(tmp_path / "secret")
        return iter(entries)
    monkeypatch.setattr(snapshot_mod, "walk", walk_then_swap)
    with pytest.raises(SnapshotError, match="cannot open"):
        snapshot(root, hash_cache=False)


def _open_cache(path: str) -> str:
    from fscas.manifests import HashCache

    try:
        HashCache(path).close()
    except Exception as e:  # reported back to the parent, which asserts there was none
        return repr(e)
    return "ok"


def test_processes_creating_one_new_cache_at_once(tmp_path: Path) -> None:
    # A new file switched to WAL by several processes at once answered "database is locked".
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        for i in range(24):
            assert pool.map(_open_cache, [str(tmp_path / f"c{i}.db")] * 4) == ["ok"] * 4


def test_snapshot_pauses_the_garbage_collector_and_restores_it(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    (tmp_path / "a").write_bytes(b"x" * 10)
    seen: list[bool] = []
    real = snapshot_mod.hash_path_reading
    def noting(*a, **kw):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        return real(*a, **kw)
    monkeypatch.setattr(snapshot_mod, "hash_path_reading", noting)
    assert gc.isenabled()
    snapshot(tmp_path, hash_cache=False)
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        snapshot(tmp_path, hash_cache=False)
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
    with pytest.raises(SnapshotError):
        snapshot(tmp_path / "missing", hash_cache=False)
    assert gc.isenabled()  # restored on error too
    # beside a push's event loop (on_hashed) the collector keeps running
    snapshot(tmp_path, hash_cache=False, on_hashed=lambda batch: None)
    assert seen[-1] is True


def test_snapshot_holds_no_tracked_object_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    for i in range(2000):
        (tmp_path / f"f{i}").write_bytes(b"%d" % i)
    counts: list[int] = []
    real = snapshot_mod._hash_all
    def counting(*a, **kw):  # type: ignore[no-untyped-def]
        gc.collect()  # untracks tuples of ints and strings (a tuple of tuples on the second pass)
        gc.collect()
        counts.append(len(gc.get_objects()))
        return real(*a, **kw)
    monkeypatch.setattr(snapshot_mod, "_hash_all", counting)
    snapshot(tmp_path, hash_cache=False)  # imports and first-call state
    gc.collect()
    before = len(gc.get_objects())
    m = snapshot(tmp_path, hash_cache=False)
    assert len(m.paths) == 2000
    assert counts[1] - before < 500, "the walk's entries must be plain tuples the collector stops visiting"
