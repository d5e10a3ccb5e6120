"""The last-snapshot record: a warm snapshot is exactly a full one, and any change falls back to the walk."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import fscas.manifests.snapshotter as snapshot_mod
from fscas.manifests import HashCache, encode, snapshot, snapstate

WINDOW_NS = 50_000_000  # the tests' racy window: 50 ms instead of 2 s, so files age by a short sleep


def _age() -> None:
    time.sleep(2 * WINDOW_NS / 1e9)


def _tree(root: Path) -> None:
    for rel, data in {"a.txt": b"a" * 100, "sub/b.bin": os.urandom(5000), "sub/deep/c": b"c",
                      "other/d.txt": b"dd", ".hidden": b"h", "skip.tmp": b"x"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    os.symlink("sub/b.bin", root / "link-in")
    os.symlink("/etc/hostname", root / "link-out")
    os.symlink("other/later.txt", root / "dangling")
    os.mkfifo(root / "fifo")


class Probe:
    """Snapshots through a test cache, noting whether the walk ran (a miss) or the record answered."""

    def __init__(self, tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cache = HashCache(tmp_path / "cache" / "hashes.db", racy_window_ns=WINDOW_NS)
        self.root = root
        self.walks = 0
        self.active = False
        real = snapshot_mod.walk

        def counted(*a: object, **k: object) -> object:
            self.walks += self.active
            return real(*a, **k)  # type: ignore[arg-type]

        monkeypatch.setattr(snapshot_mod, "walk", counted)

    def __call__(self, **kw: object) -> tuple[bytes, list[tuple[str, str]]]:
        skipped: list[tuple[str, str]] = []
        self.active = True
        try:
            m = snapshot(self.root, hash_cache=self.cache, on_skip=lambda rel, why: skipped.append((rel, why)),
                         **kw)  # type: ignore[arg-type]
        finally:
            self.active = False
        return encode(m), sorted(skipped)


def _full(root: Path, **kw: object) -> tuple[bytes, list[tuple[str, str]]]:
    skipped: list[tuple[str, str]] = []
    m = snapshot(root, hash_cache=False, on_skip=lambda rel, why: skipped.append((rel, why)), **kw)  # type: ignore[arg-type]
    return encode(m), sorted(skipped)


def test_warm_snapshot_is_the_full_snapshot_without_a_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    _tree(root)
    _age()
    probe = Probe(tmp_path, root, monkeypatch)
    first = probe(exclude=["*.tmp"])
    assert probe.walks == 1
    again = probe(exclude=["*.tmp"])
    assert probe.walks == 1, "an unchanged tree must not be walked again"
    assert again == first == _full(root, exclude=["*.tmp"])
    assert ("link-out", "symlink points outside the root") in again[1]  # skips are reported on the warm path too
    probe()  # other globs: another record
    assert probe.walks == 2


CHANGES: dict[str, Callable[[Path], None]] = {
    "same size, mtime restored": lambda r: (_restore_mtime(r / "a.txt", lambda p: p.write_bytes(b"b" * 100))),
    "file added": lambda r: (r / "sub" / "deep" / "new.txt").write_bytes(b"new"),
    "file removed": lambda r: (r / "other" / "d.txt").unlink(),
    "file renamed": lambda r: (r / "sub" / "deep" / "c").rename(r / "sub" / "deep" / "c2"),
    "folder added": lambda r: (r / "sub" / "fresh").mkdir(),
    "folder replaced by a link": lambda r: (_swap_for_link(r / "other")),
    "excluded file becomes included": lambda r: (r / "skip.tmp").rename(r / "skip.txt"),
    "chmod": lambda r: (r / "sub" / "b.bin").chmod(0o600),
    "link target edited": lambda r: _restore_mtime(r / "sub" / "b.bin", lambda p: p.write_bytes(os.urandom(5000))),
    "dangling link comes to life": lambda r: (r / "other" / "later.txt").write_bytes(b"alive"),
    "link retargeted": lambda r: (os.unlink(r / "link-in"), os.symlink("a.txt", r / "link-in")),
    "fifo replaced by a file": lambda r: (os.unlink(r / "fifo"), (r / "fifo").write_bytes(b"now a file")),
}


def _restore_mtime(p: Path, change: Callable[[Path], object]) -> None:
    st = p.stat()
    change(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _swap_for_link(folder: Path) -> None:
    folder.rename(folder.with_name("moved"))
    os.symlink("moved", folder)


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_change_falls_back_to_the_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    root = tmp_path / "root"
    _tree(root)
    _age()
    probe = Probe(tmp_path, root, monkeypatch)
    before = probe(exclude=["*.tmp"])
    probe(exclude=["*.tmp"])
    assert probe.walks == 1
    CHANGES[change](root)
    after = probe(exclude=["*.tmp"])
    assert probe.walks == 2, f"{change}: the record was trusted after a change"
    assert after == _full(root, exclude=["*.tmp"])
    if change not in ("chmod", "folder added"):  # the others change what the manifest holds
        assert after != before


def test_a_racy_tree_is_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    _tree(root)
    probe = Probe(tmp_path, root, monkeypatch)
    probe()
    probe()
    assert probe.walks == 2, "files written within the racy window must not be trusted from a record"
    _age()
    probe()
    probe()
    assert probe.walks == 3


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "garbage", "other root"])
def test_a_damaged_or_foreign_record_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    root, other = tmp_path / "root", tmp_path / "other"
    _tree(root)
    _tree(other)
    _age()
    probe = Probe(tmp_path, root, monkeypatch)
    expected = probe()
    record = snapstate.state_path(str(tmp_path / "cache"), str(root), (), ())
    blob = Path(record).read_bytes()
    if damage == "truncated":
        Path(record).write_bytes(blob[: len(blob) // 2])
    elif damage == "flipped byte":
        Path(record).write_bytes(blob[:-10] + bytes([blob[-10] ^ 1]) + blob[-9:])
    elif damage == "garbage":
        Path(record).write_bytes(os.urandom(len(blob)))
    else:  # the record of another root under this root's name
        Probe(tmp_path, other, monkeypatch)()
        Path(record).write_bytes(Path(snapstate.state_path(str(tmp_path / "cache"), str(other), (), ())).read_bytes())
    assert probe() == expected
    assert probe.walks == 2


def test_records_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    _tree(root)
    _age()
    probe = Probe(tmp_path, root, monkeypatch)
    for i in range(snapstate._KEEP + 5):
        probe(include=[f"nothing-{i}", "**"])
    assert len(list((tmp_path / "cache" / "snapshots").iterdir())) == snapstate._KEEP


def test_random_edits_never_return_a_stale_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    root = tmp_path / "root"
    _tree(root)
    _age()
    probe = Probe(tmp_path, root, monkeypatch)
    for step in range(40):
        files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        action = rng.choice(["edit", "add", "remove", "touch", "nothing", "nothing"])
        if action == "edit" and files:
            _restore_mtime(rng.choice(files), lambda p: p.write_bytes(os.urandom(p.stat().st_size)))
        elif action == "add":
            (root / rng.choice(["", "sub", "sub/deep", "other"]) / f"n{step}").write_bytes(os.urandom(rng.randint(0, 99)))
        elif action == "remove" and len(files) > 3:
            rng.choice(files).unlink()
        elif action == "touch" and files:
            os.utime(rng.choice(files))
        if rng.random() < 0.5:
            _age()
        assert probe() == _full(root), f"step {step}: {action}"


def test_cli_warm_run_writes_the_same_bytes_and_summary(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _tree(root)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    time.sleep(2.2)  # the CLI uses the default 2 s racy window

    def run(out: str) -> dict[str, object]:
        p = subprocess.run([sys.executable, "-m", "fscas", "manifest", "snapshot", str(root), "-o", str(tmp_path / out),
                            "-e", "*.tmp", "--json"], env=env, capture_output=True, text=True, check=True)
        summary: dict[str, object] = json.loads(p.stdout)
        return summary

    cold = run("cold")
    assert list((tmp_path / "xdg" / "fscas" / "snapshots").iterdir()), "the cold run left no record"
    warm = run("warm")
    assert (tmp_path / "warm").read_bytes() == (tmp_path / "cold").read_bytes()
    assert {**warm, "output": None} == {**cold, "output": None}
    assert warm["skipped"] and warm["files"] == 6
    probe = subprocess.run([sys.executable, "-X", "importtime", "-m", "fscas", "manifest", "snapshot", str(root),
                            "-o", str(tmp_path / "again"), "-e", "*.tmp"], env=env, capture_output=True, text=True,
                           check=True)
    assert " attr" not in probe.stderr and "sqlite3" not in probe.stderr, "the warm path imports attrs or sqlite3"
