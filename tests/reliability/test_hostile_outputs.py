"""Hostile output manifests, rules files, state files and snapshots: refused whole, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
from cli_runner import run_fscas

import fscas
from fscas import keys
from fscas.errors import UnsafePathError
from fscas.manifests import Manifest, ManifestPath, hash_bytes

IDS = {"farm_id": "farm-1", "queue_id": "queue-1", "job_id": "job-1"}
CLI_IDS = ["--farm-id", "farm-1", "--queue-id", "queue-1", "--job-id", "job-1"]


def _output(store: fscas.Store, root: str, paths: dict[str, bytes]) -> str:
    """A worker-written output manifest for `root` whose paths are taken as given, with their data stored."""
    entries = [ManifestPath(path=rel, hash=store.put_bytes(data), size=len(data), mtime=1_700_000_000_000_000)
               for rel, data in paths.items()]
    key = keys.output_manifest_key("farm-1", "queue-1", "job-1", "step-1", "task-1", "sessionaction-1", 1700000000.5,
                                   root, None)
    store.put_manifest(key, Manifest.from_paths(entries), metadata=keys.output_metadata(root, None))
    return key


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


WINDOWS_ESCAPES = {"D:/evil.txt": b"d", "C:/Windows/evil2.txt": b"w", "C:/Users/artist/.ssh/authorized_keys": b"k"}


@pytest.mark.parametrize("hostile", sorted(WINDOWS_ESCAPES))
def test_a_drive_letter_in_an_output_path_refuses_the_manifest(hostile: str, tmp_path: Path) -> None:
    # The schedule: the user's rules map C:\proj, D:\, C:\Windows and C:\Users\artist; a worker's
    # output manifest for C:\proj names files on other drives and folders. Windows' path join lets a drive
    # replace the root, so each would land where another rule sends it.
    store_path, a, b = tmp_path / "store", tmp_path / "A", tmp_path / "B"
    with fscas.open_store(str(store_path), existence_cache=False) as store:
        _output(store, "C:\\proj", {"good/frame.exr": b"fine", hostile: WINDOWS_ESCAPES[hostile]})
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": "pathmapping-1.0", "path_mapping_rules": [
        {"source_path_format": "WINDOWS", "source_path": s, "destination_path": str(d)}
        for s, d in (("C:\\proj", a), ("D:\\", b), ("C:\\Windows", b / "win"), ("C:\\Users\\artist", b / "home-artist"))]}))
    r = run_fscas("outputs", "download", *CLI_IDS, "--path-mapping-rules", str(rules), "--store", str(store_path),
                  home=tmp_path)
    assert r.returncode == 2, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert hostile in line and "C:\\proj" in line and "not relative to its root" in line, line
    assert _files(a) == [] and _files(b) == []  # refused whole: not even the good file


@pytest.mark.parametrize("hostile", ["../top.txt", "/abs.txt", "sub/../../up.txt", "\\\\server\\share\\x.txt",
                                     "..\\up.txt", "c:relative.txt"])
def test_a_posix_root_refuses_every_escape_too(hostile: str, tmp_path: Path) -> None:
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        _output(store, "/projects/shot", {"ok.txt": b"ok", hostile: b"evil"})
        with pytest.raises(UnsafePathError, match="not relative to its root /projects/shot"):
            store.download_outputs(**IDS, dest_for_root={"/projects/shot": str(tmp_path / "dest")})
    assert not (tmp_path / "dest").exists()


def test_a_rules_file_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        _output(store, "/projects/shot", {"ok.txt": b"ok"})
    rules = tmp_path / "rules.json"
    rules.write_text("[" * 100_000 + "]" * 100_000)
    r = run_fscas("outputs", "download", *CLI_IDS, "--path-mapping-rules", str(rules), "--store",
                  str(tmp_path / "store"), home=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert str(rules) in r.stderr and "internal error" not in r.stderr


@pytest.mark.parametrize("state", [{"yesterday": 1}, "a list"], ids=["a word for a timestamp", "a list"])
def test_a_malformed_since_state_is_one_line_naming_the_field(state: object, tmp_path: Path) -> None:
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        key = _output(store, "/projects/shot", {"ok.txt": b"ok"})
        url = store.url
    manifests = {key: "yesterday"} if state == {"yesterday": 1} else {key: [1, 2]}
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": "fscas-outputs-state-1", "store": url, **IDS, "manifests": manifests}))
    r = run_fscas("outputs", "download", *CLI_IDS, "--root", f"/projects/shot={tmp_path / 'dest'}", "--since",
                  str(path), "--store", str(tmp_path / "store"), home=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert str(path) in r.stderr and key in r.stderr and "internal error" not in r.stderr
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("hostile", ["/abs.txt", "../top.txt", "C:/drive.txt"])
def test_fscas_fs_refuses_a_manifest_with_one_hostile_name(hostile: str, tmp_path: Path) -> None:
    # One bad name used to hide every good file (find('') listed nothing); now the manifest is refused
    # with the error pull gives, naming the path.
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        good = ManifestPath(path="dir/good.txt", hash=store.put_bytes(b"good"), size=4, mtime=1)
        bad = ManifestPath(path=hostile, hash=hash_bytes(b"good"), size=4, mtime=1)
        manifest = Manifest.from_paths([good, bad])
        key = "Manifests/hostile.manifest"
        store.put_manifest(key, manifest)
        with pytest.raises(UnsafePathError, match="not relative") as pulled:
            store.download(manifest, tmp_path / "pulled")
        fs = fsspec.filesystem("fscas", store=str(tmp_path / "store"), manifest=key, skip_instance_cache=True)
        for call in (lambda: fs.find(""), lambda: fs.walk("").__next__(), lambda: fs.cat_file("dir/good.txt")):
            with pytest.raises(UnsafePathError) as e:
                call()
            assert repr(hostile) in str(e.value) and repr(hostile) in str(pulled.value)
