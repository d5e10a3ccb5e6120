"""`fscas manifest ...` end to end, as a subprocess: stdout, stderr, exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cli_runner import run_fscas

from fscas.manifests import decode, encode, hash_bytes, manifest_hash


def fscas(*args: str, env_home: Path) -> subprocess.CompletedProcess[str]:
    return run_fscas(*args, home=env_home, timeout=120)


def test_snapshot_to_file_json_summary_only_json(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("hello")
    (root / "out").symlink_to(tmp_path)
    r = fscas("manifest", "snapshot", str(root), "-o", str(tmp_path / "m.manifest"), "--json", env_home=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)  # stdout is exactly one JSON document
    data = (tmp_path / "m.manifest").read_bytes()
    assert summary["hash"] == manifest_hash(data)
    assert summary["files"] == 1 and summary["skipped"][0]["path"] == "out"
    assert decode(data).paths[0].hash == hash_bytes(b"hello")
    assert (tmp_path / "cache" / "fscas" / "hashes.db").exists()


def test_snapshot_to_stdout_is_canonical_bytes(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "f").write_text("x")
    r = fscas("manifest", "snapshot", str(tmp_path / "r"), "--no-cache", env_home=tmp_path)
    assert r.returncode == 0
    assert encode(decode(r.stdout)) == r.stdout.encode()
    assert not (tmp_path / "cache").exists()


def test_diff_merge_show(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    (root / "a").write_text("1")
    (root / "b").write_text("2")
    assert fscas("manifest", "snapshot", str(root), "-o", str(tmp_path / "m1"), env_home=tmp_path).returncode == 0
    (root / "a").write_text("11")
    (root / "c").write_text("3")
    (root / "b").unlink()
    r = fscas("manifest", "diff", str(root), str(tmp_path / "m1"), "--json", env_home=tmp_path)
    assert json.loads(r.stdout) == {"new": ["c"], "modified": ["a"], "deleted": ["b"]}
    fscas("manifest", "snapshot", str(root), "-o", str(tmp_path / "m2"), env_home=tmp_path)
    r = fscas("manifest", "merge", str(tmp_path / "m1"), str(tmp_path / "m2"), "-o", str(tmp_path / "m3"),
              "--json", env_home=tmp_path)
    assert json.loads(r.stdout)["files"] == 3
    r = fscas("manifest", "show", str(tmp_path / "m3"), "--json", env_home=tmp_path)
    assert [p["path"] for p in json.loads(r.stdout)["paths"]] == ["a", "b", "c"]


def test_bad_input_exit_2_with_named_file_and_nothing_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.manifest"
    bad.write_text('{"manifestVersion":"2023-03-03","hashAlg":"xxh128","totalSize":1,"paths":[{"path":"a"}]}')
    r = fscas("manifest", "merge", str(bad), "-o", str(tmp_path / "out"), env_home=tmp_path)
    assert r.returncode == 2
    assert "bad.manifest" in r.stderr and "missing required field" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
    r = fscas("manifest", "snapshot", str(tmp_path / "nope"), env_home=tmp_path)
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr  # input errors are 2
    r = fscas("manifest", "snapshot", str(tmp_path), "-i", "[oops", env_home=tmp_path)
    assert r.returncode == 2 and "[oops" in r.stderr
    r = fscas("manifest", "frobnicate", env_home=tmp_path)
    assert r.returncode == 2
