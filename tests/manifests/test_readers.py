"""Reading small files: told whether they came from the disk, and read in parallel only then
(`hash_path_reading`, `fscas.manifests.readers`)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from stores import evict

from fscas.manifests import encode, hash_bytes, readers, snapshot, snapshotter
from fscas.manifests.hashing import hash_path_reading

PAGE = os.sysconf("SC_PAGE_SIZE")


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    evict(path)  # written pages are dirty until synced: sync, then they can go
    return path


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="RWF_NOWAIT is Linux's")
def test_a_file_read_from_the_disk_is_told_and_read_right(tmp_path: Path) -> None:
    data = os.urandom(3 * PAGE + 17)
    f = _written(tmp_path / "f", data)
    d, got, cold = hash_path_reading(f)
    assert (got, d.hash, cold) == (data, hash_bytes(data), True)
    d, got, cold = hash_path_reading(f)  # now cached
    assert (got, d.hash, cold) == (data, hash_bytes(data), False)
    evict(f, PAGE, PAGE)  # only the second page gone: the cached first part, then the rest read
    d, got, cold = hash_path_reading(f)
    assert (got, d.hash, cold) == (data, hash_bytes(data), True)


class _Watched(readers.Gate):
    made: ClassVar[list[_Watched]] = []

    def __init__(self) -> None:
        super().__init__()
        self.made.append(self)


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="RWF_NOWAIT is Linux's")
def test_a_tree_on_disk_is_read_in_parallel_and_a_cached_one_on_one_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshotter, "Gate", _Watched)
    root = tmp_path / "r"
    for i in range(1500):
        (root / f"d{i % 10}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 10}" / f"f{i}").write_bytes(b"x" * (i % 900) + str(i).encode())
    for f in root.rglob("f*"):
        evict(f)
    from_disk = snapshot(root, hash_cache=False)
    cached = snapshot(root, hash_cache=False)
    assert encode(from_disk) == encode(cached)
    first, second = _Watched.made[-2:]
    assert first.batches[readers.MANY] >= 4, first.batches  # all but the first batch (6 in all)
    assert second.batches == {1: 6, readers.MANY: 0}


def test_the_gate_lets_one_run_or_many_as_the_last_batch_noted() -> None:
    gate = readers.Gate()
    running, peak = [0], [0]
    lock = threading.Lock()

    def work() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    def burst() -> int:
        peak[0] = 0
        threads = [threading.Thread(target=gate.run, args=(work,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return peak[0]

    assert burst() == 1
    gate.note(cold=32, files=256)  # 1/8 from the disk: parallel
    assert burst() == readers.MANY
    gate.note(cold=31, files=256)
    assert burst() == 1
    gate.note(cold=0, files=0)
    assert gate.allowed == 1
