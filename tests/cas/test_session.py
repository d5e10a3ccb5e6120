"""The worker's half of job attachments: `fscas session start|finish` against Deadline's own
`AssetSync.sync_inputs` / `sync_outputs` on a moto server, and the refusals a worker needs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_fscas

import fscas
from fscas.attachments import Attachments, dest_dir_name
from fscas.conformance.plugin import unique_bucket
from fscas.errors import ConfigError, FscasError
from fscas.manifests import encode, manifest_hash, snapshot

IDS = {"farm_id": "farm-1", "queue_id": "queue-1", "job_id": "job-1"}
POSIX_ROOT, WINDOWS_ROOT, LOCATED_ROOT = "/projects/scène-010", "C:\\Users\\artist\\shot", "/mnt/projects"


def _files(folder: Path, files: dict[str, bytes], mtime: float = 1_700_000_000.0) -> Path:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
    return folder


def _tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns // 1000)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _job(store: fscas.Store, work: Path) -> list[dict[str, Any]]:
    """Three input roots (POSIX non-ASCII, Windows-format, one under a storage-profile location) and
    step outputs: step-1 task-1 ran twice (the rerun wins), step-2 wrote the POSIX root too."""
    roots = []
    for i, (root, fmt, fsl, files) in enumerate([
            (POSIX_ROOT, "POSIX", None, {"scene.blend": b"scene v1", "tex/wood.png": b"wood", "日本/a.txt": b"jp"}),
            (WINDOWS_ROOT, "WINDOWS", None, {"comp.nk": b"nuke", "plates/p1.exr": b"plate"}),
            (LOCATED_ROOT, "POSIX", "Projects", {"lib/asset.usd": b"usd"})]):
        src = _files(work / f"in{i}", files)
        m = snapshot(src, hash_cache=False)
        store.upload(m, src)
        path = f"farm-1/queue-1/Inputs/{i:032x}/{manifest_hash(encode(m))}_input"
        store.put_manifest(f"Manifests/{path}", m)
        roots.append({"rootPath": root, "rootPathFormat": fmt, "inputManifestPath": path,
                      "inputManifestHash": manifest_hash(encode(m)), "outputRelativeDirectories": ["renders"],
                      **({"fileSystemLocationName": fsl} if fsl else {})})
    runs = [("step-1", "task-1", "sessionaction-1-1", {"renders/f1.exr": b"first run", "renders/only-first.exr": b"o"}),
            ("step-1", "task-1", "sessionaction-1-2", {"renders/f1.exr": b"rerun wins"}),
            ("step-2", "task-1", "sessionaction-2-1", {"scene.blend": b"scene from step 2", "renders/f2.exr": b"2"})]
    for i, (step, task, action, files) in enumerate(runs):
        src = _files(work / f"out{i}", files, mtime=1_700_000_100.0 + i)
        store.put_output(snapshot(src, hash_cache=False), src, source_root=POSIX_ROOT, step_id=step, task_id=task,
                         session_action_id=action, start_time=1_700_000_000.0 + i, **IDS)
        time.sleep(1.1)  # S3 LastModified has one-second resolution: the merge follows it
    return roots


def _deadline_attachments(roots: list[dict[str, Any]]) -> Any:
    from deadline.job_attachments.models import Attachments as DeadlineAttachments
    from deadline.job_attachments.models import ManifestProperties, PathFormat

    return DeadlineAttachments(manifests=[ManifestProperties(
        rootPath=r["rootPath"], rootPathFormat=PathFormat(r["rootPathFormat"].lower()),
        fileSystemLocationName=r.get("fileSystemLocationName"), inputManifestPath=r["inputManifestPath"],
        inputManifestHash=r["inputManifestHash"], outputRelativeDirectories=r["outputRelativeDirectories"])
        for r in roots])


@pytest.mark.deadline
# The reference we match is Deadline's own worker code, which it has marked deprecated.
@pytest.mark.filterwarnings(r"ignore:sync_(inputs|outputs) is deprecated:DeprecationWarning")
def test_start_and_finish_match_deadlines_worker(moto_server: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from deadline.job_attachments.asset_sync import AssetSync
    from deadline.job_attachments.models import JobAttachmentS3Settings

    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    url = moto_server.store_url(bucket, "DeadlineRoot")
    with fscas.open_store(url, existence_cache=False) as store:
        roots = _job(store, tmp_path / "work")
    doc = tmp_path / "attachments.json"
    doc.write_text(json.dumps({"manifests": roots, "fileSystem": "COPIED"}))

    # Deadline's worker code: inputs, two step dependencies, the located root mapped by a storage profile
    theirs, ours = tmp_path / "deadline-session", tmp_path / "fscas-session"
    theirs.mkdir()
    sync = AssetSync("farm-1", boto3_session=boto3.Session())
    settings = JobAttachmentS3Settings(bucket, "DeadlineRoot")
    _, their_rules = sync.sync_inputs(settings, _deadline_attachments(roots), "queue-1", "job-1", theirs,
                                      storage_profiles_path_mapping_rules={LOCATED_ROOT: str(tmp_path / "d-projects")},
                                      step_dependencies=["step-1", "step-2"])
    r = run_fscas("session", "start", "--store", url, "--attachments", str(doc), "--session-dir", str(ours),
                  "--farm-id", "farm-1", "--queue-id", "queue-1", "--job-id", "job-1", "--step-dependency", "step-1",
                  "--step-dependency", "step-2", "--file-system-location", f"Projects={tmp_path / 'f-projects'}",
                  "--write-path-mapping-rules", str(tmp_path / "rules.json"), "--json", home=tmp_path,
                  extra=moto_server.env())
    assert r.returncode == 0, r.stderr
    assert _tree(ours) == _tree(theirs) and _tree(ours)  # same names, bytes and mtimes
    assert _tree(tmp_path / "f-projects") == _tree(tmp_path / "d-projects")
    posix = _tree(ours / dest_dir_name(POSIX_ROOT))
    assert posix["scene.blend"][0] == b"scene from step 2" and posix["renders/f1.exr"][0] == b"rerun wins"
    assert "renders/only-first.exr" not in posix  # Deadline keeps only a task's latest run
    ours_rules = json.loads((tmp_path / "rules.json").read_text())
    assert ours_rules["version"] == "pathmapping-1.0" and json.loads(r.stdout)["path_mapping_rules"] == ours_rules
    assert [{**rule, "destination_path": rule["destination_path"].replace(str(theirs), str(ours))}
            for rule in their_rules] == ours_rules["path_mapping_rules"]

    # The task writes the same outputs in both sessions (one new file, one input changed under renders/)
    start = time.time()
    for session, projects in ((theirs, tmp_path / "d-projects"), (ours, tmp_path / "f-projects")):
        _files(session / dest_dir_name(POSIX_ROOT), {"renders/new.exr": b"new frame", "renders/f1.exr": b"redone"},
               mtime=start + 5)
        _files(session / dest_dir_name(WINDOWS_ROOT), {"renders\\x.exr".replace("\\", "/"): b"win"}, mtime=start + 5)
        _files(projects, {"renders/lib.exr": b"located"}, mtime=start + 5)
    sync.sync_outputs(JobAttachmentS3Settings(bucket, "OutD"), _deadline_attachments(roots), "queue-1", "job-1",
                      "step-3", "task-1", "sessionaction-3-1", start, theirs,
                      storage_profiles_path_mapping_rules={LOCATED_ROOT: str(tmp_path / "d-projects")})
    r = run_fscas("session", "finish", "--store", moto_server.store_url(bucket, "OutF"), "--attachments", str(doc),
                  "--session-dir", str(ours), "--farm-id", "farm-1", "--queue-id", "queue-1", "--job-id", "job-1",
                  "--step-id", "step-3", "--task-id", "task-1", "--session-action-id", "sessionaction-3-1",
                  "--start-time", repr(start), "--file-system-location", f"Projects={tmp_path / 'f-projects'}",
                  "--json", home=tmp_path, extra=moto_server.env())
    assert r.returncode == 0, r.stderr
    s3 = boto3.client("s3")

    def stored(prefix: str) -> dict[str, tuple[bytes, dict[str, str]]]:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
        found = {}
        for o in listed:
            got = s3.get_object(Bucket=bucket, Key=o["Key"])
            found[o["Key"].removeprefix(prefix + "/")] = (got["Body"].read(), got["Metadata"])
        return found

    d, f = stored("OutD"), stored("OutF")
    assert d.keys() - {"fscas-epoch"} == f.keys() - {"fscas-epoch"} and len(d) == 3 + 4  # 3 manifests, 4 objects
    assert {k: v for k, v in d.items()} == {k: v for k, v in f.items() if k != "fscas-epoch"}
    assert sorted(json.loads(r.stdout)["keys"]) == sorted(k for k in d if k.startswith("Manifests/"))


def test_refusals_name_the_field_and_leave_nothing_trusted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"manifests\[0\]\.rootPath"):
        Attachments.from_json({"manifests": [{"rootPath": "relative/x", "rootPathFormat": "POSIX"}]})
    with pytest.raises(ConfigError, match=r"outputRelativeDirectories: '\.\./up' leaves its root"):
        Attachments.from_json({"manifests": [{"rootPath": "/r", "rootPathFormat": "POSIX",
                                              "outputRelativeDirectories": ["../up"]}]})
    with pytest.raises(ConfigError, match="not JSON"):
        Attachments.from_json("{")
    store_dir = tmp_path / "store"
    with fscas.open_store(str(store_dir)) as store:
        src = _files(tmp_path / "src", {"a.txt": b"a"})
        m = snapshot(src, hash_cache=False)
        store.upload(m, src)
        store.put_manifest("Manifests/in/x_input", m)
        base = {"rootPath": "/r", "rootPathFormat": "POSIX", "inputManifestPath": "in/x_input"}
        wrong = Attachments.from_json({"manifests": [{**base, "inputManifestHash": "0" * 32}]})
        with pytest.raises(FscasError, match=r"inputManifestHash: Manifests/in/x_input hashes to"):
            store.session_start(wrong, tmp_path / "s1", **IDS)
        missing = Attachments.from_json({"manifests": [{**base, "inputManifestPath": "in/nope"}]})
        with pytest.raises(FscasError, match=r"inputManifestPath: Manifests/in/nope is not in the store"):
            store.session_start(missing, tmp_path / "s2", **IDS)
        good = Attachments.from_json({"manifests": [base]})
        with pytest.raises(ConfigError, match="--step-dependency step-9: the step has no outputs"):
            store.session_start(good, tmp_path / "s3", step_dependencies=["step-9"], **IDS)
        (tmp_path / "s4").mkdir()
        (tmp_path / "s4" / dest_dir_name("/r")).write_bytes(b"a file where the root goes")
        with pytest.raises(ConfigError, match=r"rootPath: '/r' maps to .*which is a file"):
            store.session_start(good, tmp_path / "s4", **IDS)
        for name in ("s1", "s2", "s3"):
            assert not (tmp_path / name).exists(), name  # refused before anything was written


def test_shared_locations_stay_in_place_and_nothing_changed_writes_nothing(tmp_path: Path) -> None:
    with fscas.open_store(str(tmp_path / "store")) as store:
        src = _files(tmp_path / "src", {"a.txt": b"a", "out/old.txt": b"old"})
        m = snapshot(src, hash_cache=False)
        store.push(m, src, farm_id="farm-1", queue_id="queue-1")  # a pushed store has its epoch: no wait for one
        store.put_manifest("Manifests/in/x_input", m)
        attachments = Attachments.from_json({"manifests": [
            {"rootPath": "/r", "rootPathFormat": "POSIX", "inputManifestPath": "in/x_input",
             "outputRelativeDirectories": ["out"]},
            {"rootPath": "/shared", "rootPathFormat": "POSIX", "fileSystemLocationName": "Shared",
             "inputManifestPath": "in/x_input"}]})
        shared = fscas.pathmapping.FileSystemLocation(name="Shared", path=str(tmp_path / "nas"), type="SHARED")
        started = store.session_start(attachments, tmp_path / "s", locations=[shared], **IDS)
        assert started.shared == ("/shared",) and not (tmp_path / "nas").exists()
        assert started.summary.files == 2
        ids = {**IDS, "step_id": "step-1", "task_id": "task-1", "session_action_id": "sa-1",
               "start_time": time.time(), "locations": [shared]}
        assert store.session_finish(attachments, tmp_path / "s", **ids).keys == ()  # inputs are not outputs
        written = tmp_path / "s" / dest_dir_name("/r") / "out" / "new.txt"
        written.write_bytes(b"new")
        done = store.session_finish(attachments, tmp_path / "s", **ids)
        assert len(done.keys) == 1 and done.files == 1
        assert [p.path for p in store.get_manifest(done.keys[0]).paths] == ["out/new.txt"]
        assert store.session_finish(attachments, tmp_path / "s", **{**ids, "session_action_id": "sa-2"}).keys == ()
        # the session's next task starts again: what earlier tasks wrote is still not its output
        store.session_start(attachments, tmp_path / "s", locations=[shared], **IDS)
        assert store.session_finish(attachments, tmp_path / "s", **{**ids, "session_action_id": "sa-3"}).keys == ()


def test_group_gets_read_and_write_on_the_session_tree(tmp_path: Path) -> None:
    import grp
    import stat

    with fscas.open_store(str(tmp_path / "store")) as store:
        src = _files(tmp_path / "src", {"a.txt": b"a", "deep/b.txt": b"b"})
        m = snapshot(src, hash_cache=False)
        store.upload(m, src)
        store.put_manifest("Manifests/in/x_input", m)
        attachments = Attachments.from_json({"manifests": [
            {"rootPath": "/r", "rootPathFormat": "POSIX", "inputManifestPath": "in/x_input"}]})
        group = grp.getgrgid(os.getgid()).gr_name
        store.session_start(attachments, tmp_path / "s", group=group, **IDS)
        with pytest.raises(ConfigError, match="--group 'no-such-group-fscas': no such group"):
            store.session_start(attachments, tmp_path / "s", group="no-such-group-fscas", **IDS)
    root = tmp_path / "s" / dest_dir_name("/r")
    for path in (root / "a.txt", root / "deep" / "b.txt"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o060 == 0o060 and path.stat().st_gid == os.getgid()
    for folder in (root, root / "deep"):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o070 == 0o070
