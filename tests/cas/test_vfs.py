"""VIRTUAL sessions (`session start --vfs`): inputs mounted lazily under FUSE (this machine has /dev/fuse),
a task reading 10 of 10,000 files fetches 10 objects, what it writes goes up at finish, which unmounts."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import time
from pathlib import Path

from cli_runner import run_fscas

import fscas

IDS = ["--farm-id", "farm-1", "--queue-id", "queue-1", "--job-id", "job-1"]


def _cached_objects(cache: Path) -> int:
    objects = cache / "fscas" / "objects"
    return sum(1 for p in objects.rglob("*") if p.is_file()) if objects.exists() else 0


def test_a_virtual_session_fetches_what_the_task_reads_and_uploads_what_it_writes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "frames").mkdir(parents=True)
    for i in range(10_000):
        (src / "frames" / f"f{i:05d}.txt").write_bytes(b"frame %d\n" % i)
    (src / "scene.txt").write_bytes(b"a teapot\n")
    store = str(tmp_path / "store")
    r = run_fscas("push", str(src), "--store", store, "--farm-id", "farm-1", "--queue-id", "queue-1", "--json",
                  home=tmp_path)
    assert r.returncode == 0, r.stderr
    pushed = json.loads(r.stdout)
    doc = tmp_path / "job.json"
    doc.write_text(json.dumps({"fileSystem": "VIRTUAL", "manifests": [{
        "rootPath": str(src), "rootPathFormat": "posix", "inputManifestPath": pushed["key"].removeprefix("Manifests/"),
        "inputManifestHash": pushed["hash"], "outputRelativeDirectories": ["out"]}]}))
    session, rules = tmp_path / "session", tmp_path / "rules.json"
    started = time.time()
    r = run_fscas("session", "start", "--attachments", str(doc), "--session-dir", str(session), *IDS, "--store", store,
                  "--write-path-mapping-rules", str(rules), home=tmp_path)
    assert r.returncode == 0, r.stderr
    root = Path(json.loads(rules.read_text())["path_mapping_rules"][0]["destination_path"])
    cache = tmp_path / "cache"  # run_fscas's XDG_CACHE_HOME: the mount's content cache is under it
    try:
        assert os.path.ismount(root) and root.parent == session
        assert len(os.listdir(root / "frames")) == 10_000 and _cached_objects(cache) == 0  # listed, nothing fetched
        for i in range(0, 10_000, 1000):
            assert (root / "frames" / f"f{i:05d}.txt").read_bytes() == b"frame %d\n" % i
        assert _cached_objects(cache) == 10  # 10 files read: 10 objects fetched
        (root / "out").mkdir()
        (root / "out" / "render.txt").write_text((root / "scene.txt").read_text().upper())
        (root / "scene.txt").write_text("changed by the task\n")  # copied up; the store keeps the original
        os.unlink(root / "frames" / "f00001.txt")
        # renameat2's RENAME_EXCHANGE is refused (EINVAL), not done as a plain rename over the target
        libc = ctypes.CDLL(None, use_errno=True)
        exchange = libc.renameat2(-100, bytes(root / "frames" / "f00002.txt"), -100,
                                  bytes(root / "frames" / "f00003.txt"), 2)
        assert exchange == -1 and ctypes.get_errno() == errno.EINVAL
        assert (root / "frames" / "f00002.txt").read_bytes() == b"frame 2\n"
        assert (root / "frames" / "f00003.txt").read_bytes() == b"frame 3\n"
        assert not (root / "frames" / "f00001.txt").exists() and (src / "scene.txt").read_text() == "a teapot\n"
    except BaseException:
        run_fscas("session", "finish", "--attachments", str(doc), "--session-dir", str(session), *IDS, "--store",
                  store, "--step-id", "step-1", "--session-action-id", "sessionaction-1", "--start-time",
                  str(started), home=tmp_path)  # unmount, whatever failed
        raise
    r = run_fscas("session", "finish", "--attachments", str(doc), "--session-dir", str(session), *IDS, "--store", store,
                  "--step-id", "step-1", "--task-id", "task-1", "--session-action-id", "sessionaction-1",
                  "--start-time", str(started), "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not os.path.ismount(root)
    done = json.loads(r.stdout)
    assert done["output_files"] == 1
    with fscas.open_store(store) as s:
        [out] = s.output_manifests("farm-1", "queue-1", "job-1")
        assert [p.path for p in out.manifest.paths] == ["out/render.txt"] and out.asset_root == str(src)
        assert s.get_bytes(out.manifest.paths[0].hash) == b"A TEAPOT\n"
