"""fscas on an `os` without Linux's extras (what Windows and macOS lack): snapshot, push, pull,
verify and a warm snapshot give the same bytes as on Linux.

A subprocess removes the Linux-only names from `os` and makes `import fcntl` fail before fscas is
imported; Windows's `msvcrt` (which the folder store locks with there) is stood in by a module whose
`locking` takes a real lock, so the store's compare-and-swap keeps its meaning.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

_WITHOUT_LINUX = r'''
import builtins, os, sys, threading, types
import asyncio, subprocess, multiprocessing, concurrent.futures  # they take any msvcrt for Windows: first

for name in ("O_DIRECTORY", "O_NOFOLLOW", "preadv", "RWF_NOWAIT", "getuid", "getgid", "sched_getaffinity"):
    if hasattr(os, name):
        delattr(os, name)
sys.modules.pop("fcntl", None)
_import = builtins.__import__

def _no_fcntl(name, *args, **kwargs):
    if name == "fcntl":
        raise ImportError("No module named 'fcntl' (as on Windows)")
    return _import(name, *args, **kwargs)

builtins.__import__ = _no_fcntl
_held = threading.Lock()
msvcrt = types.ModuleType("msvcrt")
msvcrt.LK_LOCK, msvcrt.LK_UNLCK = 1, 0
msvcrt.locking = lambda fd, mode, nbytes: _held.acquire() if mode == msvcrt.LK_LOCK else _held.release()
sys.modules["msvcrt"] = msvcrt

from fscas.cli import main
sys.exit(main(sys.argv[1:]))
'''


def _fscas(*args: str, home: Path, bare: bool) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", _WITHOUT_LINUX] if bare else [sys.executable, "-m", "fscas"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home), "FSCAS_STORE": str(home / "store")})


def _tree(root: Path) -> None:
    for i in range(40):
        (root / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 4}" / f"f{i}.bin").write_bytes(bytes([i]) * (i * 997))
    (root / "big.bin").write_bytes(b"big" * 3_000_000)


def _round_trip(src: Path, work: Path, *, bare: bool) -> list[bytes]:
    """snapshot, push, pull, verify, warm snapshot, snapshot after a change: the three manifests."""
    home = work / "home"
    home.mkdir(parents=True)
    r = _fscas("manifest", "snapshot", str(src), "-o", str(work / "a.manifest"), home=home, bare=bare)
    assert r.returncode == 0, r.stderr
    r = _fscas("push", str(src), "--json", home=home, bare=bare)
    assert r.returncode == 0, r.stderr
    r = _fscas("pull", json.loads(r.stdout)["key"], str(work / "dst"), "--json", home=home, bare=bare)
    assert r.returncode == 0, r.stderr
    r = _fscas("verify", "--json", home=home, bare=bare)
    assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout + r.stderr
    r = _fscas("manifest", "snapshot", str(src), "-o", str(work / "b.manifest"), home=home, bare=bare)
    assert r.returncode == 0, r.stderr  # warm: from the hash cache and the warm record
    for f in src.rglob("*"):
        if f.is_file():
            assert (work / "dst" / f.relative_to(src)).read_bytes() == f.read_bytes()
    return [(work / f"{n}.manifest").read_bytes() for n in "ab"]


def test_without_the_linux_extras_the_round_trip_gives_the_same_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    time.sleep(2.1)  # past the hash cache's racy window: the second snapshot is a warm one (the record is kept)
    linux = _round_trip(src, tmp_path / "linux", bare=False)
    bare = _round_trip(src, tmp_path / "bare", bare=True)
    assert linux[0] == linux[1] == bare[0] == bare[1]
    changed = src / "d1" / "f1.bin"  # the warm record without O_DIRECTORY still sees a change
    changed.write_bytes(b"changed")
    r = _fscas("manifest", "snapshot", str(src), "-o", str(tmp_path / "c.manifest"), home=tmp_path / "bare" / "home",
               bare=True)
    assert r.returncode == 0, r.stderr
    r = _fscas("manifest", "diff", str(src), str(tmp_path / "bare" / "a.manifest"), "--json",
               home=tmp_path / "bare" / "home", bare=True)
    assert "d1/f1.bin" in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "c.manifest").read_bytes() != bare[0]
