"""diff, diff_tree, merge and Deadline's output aggregation (with the D4 fix)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fscas.errors import ManifestError
from fscas.manifests import (
    Manifest,
    ManifestPath,
    OutputManifest,
    aggregate_outputs,
    decode,
    diff,
    diff_tree,
    encode,
    merge,
    snapshot,
)


def mp(path: str, h: str = "aa", size: int = 1, mtime: int = 0) -> ManifestPath:
    return ManifestPath(path, h, size, mtime)


def test_diff_new_modified_deleted() -> None:
    old = Manifest.from_paths([mp("same"), mp("changed", "aa"), mp("gone")])
    new = Manifest.from_paths([mp("same", mtime=5), mp("changed", "bb"), mp("added")])
    d = diff(old, new)
    assert (d.new, d.modified, d.deleted) == (("added",), ("changed",), ("gone",))
    assert not diff(old, old)


def test_diff_tree_fast_and_exact(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"1111")
    (tmp_path / "b").write_bytes(b"22")
    (tmp_path / "c").write_bytes(b"3")
    m = snapshot(tmp_path, hash_cache=False)
    st = (tmp_path / "a").stat()
    (tmp_path / "a").write_bytes(b"9999")  # same size, mtime restored: only exact mode sees it
    os.utime(tmp_path / "a", ns=(st.st_atime_ns, st.st_mtime_ns))
    (tmp_path / "b").write_bytes(b"222")
    (tmp_path / "c").unlink()
    (tmp_path / "d").write_bytes(b"4")
    fast = diff_tree(tmp_path, m)
    assert (fast.new, fast.modified, fast.deleted) == (("d",), ("b",), ("c",))
    exact = diff_tree(tmp_path, m, exact=True, hash_cache=False)
    assert (exact.new, exact.modified, exact.deleted) == (("d",), ("a", "b"), ("c",))


def test_diff_tree_mtime_slack_is_one_microsecond(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    os.utime(f, ns=(0, 1_000_000_000_000))
    base = snapshot(tmp_path, hash_cache=False)
    os.utime(f, ns=(0, 1_000_000_001_000))  # +1 µs: unchanged
    assert not diff_tree(tmp_path, base)
    os.utime(f, ns=(0, 1_000_000_002_000))  # +2 µs: modified
    assert diff_tree(tmp_path, base).modified == ("f",)


def test_merge_later_wins_and_total_recomputed() -> None:
    a = Manifest(paths=(mp("x", size=5), mp("y", size=1)), total_size=999)
    b = Manifest.from_paths([mp("x", "bb", size=6), mp("z", size=1)])
    m = merge(a, b)
    assert m.by_path()["x"].hash == "bb"
    assert m.total_size == 8
    with pytest.raises(ManifestError):
        merge()


T0 = datetime(2026, 1, 1, tzinfo=UTC)
PFX = "root/Manifests/farm-1/queue-1/job-1"


def out(key: str, root: str, paths: list[ManifestPath], minutes: int) -> OutputManifest:
    return OutputManifest(key=f"{PFX}/{key}", last_modified=T0 + timedelta(minutes=minutes),
                          asset_root=root, manifest=Manifest.from_paths(paths))


def outputs() -> list[OutputManifest]:
    return [
        # first run of task-1 wrote two roots
        out("step-1/task-1/2026-01-01T00:00:00.000000Z_sessionaction-1/aaa_output", "/r1", [mp("a", "11")], 1),
        out("step-1/task-1/2026-01-01T00:00:00.000000Z_sessionaction-1/bbb_output", "/r2", [mp("b", "22")], 1),
        # the rerun wrote only /r1
        out("step-1/task-1/2026-01-02T00:00:00.000000Z_sessionaction-2/aaa_output", "/r1", [mp("a", "33")], 5),
        # another task, and a step-level (chunked) manifest without a task folder
        out("step-1/task-2/2026-01-01T00:00:00.000000Z_sessionaction-3/aaa_output", "/r1", [mp("c", "44")], 3),
        out("step-2/2026-01-01T00:00:00.000000Z_sessionaction-4/aaa_output", "/r1", [mp("a", "55")], 2),
        out("step-1/task-1/notes.txt", "/r1", [mp("ignored")], 9),  # not an output key
    ]


def test_aggregate_reproduces_deadline_latest_per_task_including_d4() -> None:
    agg = aggregate_outputs(outputs())
    assert set(agg) == {"/r1"}  # D4: /r2 from the first run is dropped by Deadline's choice
    # merged oldest first: step-2 (2 min) < task-2 (3 min) < rerun of task-1 (5 min)
    assert {p.path: p.hash for p in agg["/r1"].paths} == {"a": "33", "c": "44"}


def test_aggregate_keep_earlier_roots_fixes_d4() -> None:
    agg = aggregate_outputs(outputs(), keep_earlier_roots=True)
    assert {p.path: p.hash for p in agg["/r2"].paths} == {"b": "22"}
    assert {p.path: p.hash for p in agg["/r1"].paths} == {"a": "33", "c": "44"}


def test_million_paths_encode_decode_diff_merge() -> None:
    n = 1_000_000
    base = Manifest.from_paths(ManifestPath(f"d{i % 997}/f{i}.exr", f"{i:032x}", i % 4096, i) for i in range(n))
    data = encode(base)
    back = decode(data)
    assert len(back.paths) == n and back.total_size == base.total_size
    changed = Manifest.from_paths([*back.paths[1:], ManifestPath("new.exr", "ff", 1, 1)])
    d = diff(base, changed)
    assert (len(d.new), len(d.modified), len(d.deleted)) == (1, 0, 1)
    assert len(merge(base, changed).paths) == n + 1
