"""`fscas mount`: a snapshot under FUSE, for real (this machine has /dev/fuse): ls -R, cat, cmp, unmount."""

from __future__ import annotations

import contextlib
import filecmp
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

import fscas
from fscas.content import ContentCache
from fscas.manifests import snapshot

REPO = Path(__file__).resolve().parents[2]


def _wait_mounted(mountpoint: Path, proc: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.ismount(mountpoint):
            return
        if proc.poll() is not None:
            pytest.fail(f"fscas mount exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"FUSE did not mount within {seconds} s: {proc.stderr.read() if proc.stderr else ''}")


@contextlib.contextmanager
def _mounted(key: str, store: Path, tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """`fscas mount KEY` at tmp_path/mnt, its content cache in tmp_path/cache; unmounted after."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "fscas", "mount", key, str(mnt), "--store", str(store)],
                            env=env, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        _wait_mounted(mnt, proc)
        yield mnt, proc
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)


def test_mount_lists_reads_and_refuses_writes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel, data in {"a.txt": b"alpha\n", "dir/b.bin": os.urandom(300_000), "dir/deep/big.bin": os.urandom(6 * 2**20),
                      "scène/é.txt": b"accent\n", "empty": b""}.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    with fscas.open_store(str(tmp_path / "store")) as store:
        manifest = snapshot(src, hash_cache=False)
        key, _, _ = store.push(manifest, src, farm_id="f", queue_id="q")
    with _mounted(key, tmp_path / "store", tmp_path) as (mnt, proc):
        listing = subprocess.run(["ls", "-R", str(mnt)], capture_output=True, text=True, check=True).stdout
        assert "big.bin" in listing and "é.txt" in listing
        cat = subprocess.run(["cat", str(mnt / "a.txt")], capture_output=True, check=True).stdout
        assert cat == b"alpha\n"
        cmp = filecmp.dircmp(src, mnt)
        assert not cmp.left_only and not cmp.right_only and not cmp.diff_files
        for rel in ("dir/b.bin", "dir/deep/big.bin", "scène/é.txt", "empty"):
            assert subprocess.run(["cmp", str(src / rel), str(mnt / rel)]).returncode == 0, rel
        # mtimes cross FUSE as integer nanoseconds: exactly the manifest's microseconds
        mtimes = {p.path: p.mtime for p in manifest.paths}
        for rel in ("dir/b.bin", "scène/é.txt"):
            assert os.stat(mnt / rel).st_mtime_ns == mtimes[rel] * 1000, rel
        with pytest.raises(OSError) as refused:
            (mnt / "new.txt").write_bytes(b"x")
        assert refused.value.errno in (30, 13)  # EROFS (or EACCES from the 0444 mode)
        with pytest.raises(OSError):
            (mnt / "a.txt").unlink()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert not os.path.ismount(mnt) and list(mnt.iterdir()) == []


def test_mount_refuses_a_busy_mountpoint_and_a_bad_manifest(tmp_path: Path) -> None:
    from cli_runner import run_fscas

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    r = run_fscas("mount", "Manifests/nope", str(tmp_path / "busy"), "--store", str(tmp_path / "store"), home=tmp_path)
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr and r.stderr.startswith("fscas: error:"), r.stderr
    # The form before --store (STORE MANIFEST MOUNTPOINT) still works, with one deprecation line first.
    old = run_fscas("mount", str(tmp_path / "store"), "Manifests/nope", str(tmp_path / "busy"), home=tmp_path)
    warning, error = old.stderr.splitlines()[:2]
    assert "deprecated" in warning and error == r.stderr.splitlines()[0], old.stderr


def test_cp_r_from_a_mount_gives_every_byte_and_a_corrupt_object_is_an_io_error(tmp_path: Path) -> None:
    """Hundreds of small files go through the read-ahead (fetched ahead, held in memory, answered
    without a file read); every byte `cp -r` gets is the source's, and a corrupt object is EIO."""
    src = tmp_path / "src"
    files = {f"d{i % 7}/f{i:04d}.bin": os.urandom(1 + (i * 977) % 20_000) for i in range(600)}
    files["d0/large.bin"] = os.urandom(5 * 2**20 + 17)  # past the read-ahead: fetched when read
    files["zz/bad.bin"] = b"to be corrupted in the store"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    store = tmp_path / "store"
    with fscas.open_store(str(store)) as opened:
        key, _, _ = opened.push(snapshot(src, hash_cache=False), src, farm_id="f", queue_id="q")
    bad = next(p for p in (store / "Data").rglob("*") if p.is_file() and p.read_bytes() == files["zz/bad.bin"])
    bad.write_bytes(b"not what it hashes to, same len")
    with _mounted(key, store, tmp_path) as (mnt, _):
        (tmp_path / "out").mkdir()
        for folder in sorted({rel.split("/")[0] for rel in files} - {"zz"}):
            subprocess.run(["cp", "-r", str(mnt / folder), str(tmp_path / "out" / folder)], check=True)
        for rel, data in files.items():
            if rel != "zz/bad.bin":
                assert (tmp_path / "out" / rel).read_bytes() == data, rel
        with pytest.raises(OSError) as refused:
            (mnt / "zz" / "bad.bin").read_bytes()
        assert refused.value.errno == 5  # EIO: nothing unverified is ever served
    cache = ContentCache(tmp_path / "cache" / "fscas" / "objects")
    good = {xxhash.xxh3_128_hexdigest(data) for rel, data in files.items() if rel != "zz/bad.bin"}
    assert cache.digests() == good  # each good object entered the cache; the bad one never
    # the small ones are packed: the cache holds one file, the large object, and the packs
    assert [p.name for p in cache.path.glob("??/*")] == [xxhash.xxh3_128_hexdigest(files["d0/large.bin"])]
    assert len(list(cache.packs.folder.glob("*.pack"))) == 1
    assert sum(p.stat().st_size for p in cache.packs.folder.glob("*.idx")) == 32 * (len(files) - 2)  # once each
