"""Job outputs: path mapping against Deadline's own code, downloads identical to Deadline's OutputDownloader,
incremental downloads, storage-profile locations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import fscas
from fscas.conformance.plugin import unique_bucket
from fscas.errors import ConfigError
from fscas.manifests import hash_bytes, snapshot
from fscas.pathmapping import FileSystemLocation, PathMappingRules

POSIX_RULES = [("/mnt/projects", "/local/p"), ("/mnt/projects/special", "/local/s"), ("/mnt/a b/é", "/local/é")]
POSIX_PATHS = ["/mnt/projects/a/b.exr", "/mnt/projects/special/x/y", "/mnt/projectsX/y", "/mnt/projects/",
               "/mnt//projects/a", "/other/x", "/mnt/projects", "/mnt/a b/é/f.txt", "/mnt/projects/special"]
WINDOWS_RULES = [("C:\\Projects", "/local/win"), ("c:/projects/Special", "/local/ws"), ("\\\\server\\share", "/mnt/sh")]
WINDOWS_PATHS = ["C:\\Projects\\a\\B.exr", "c:\\PROJECTS\\a", "C:/Projects/a/b", "C:\\Projects\\Special\\x",
                 "c:\\projects\\special", "D:\\Projects\\x", "\\\\server\\share\\x\\Y.txt", "\\\\SERVER\\Share\\z",
                 "C:\\Projects\\", "C:\\ProjectsX\\a"]


@pytest.mark.deadline
@pytest.mark.parametrize("fmt, rules, paths", [("POSIX", POSIX_RULES, POSIX_PATHS),
                                               ("WINDOWS", WINDOWS_RULES, WINDOWS_PATHS)])
def test_path_mapping_agrees_with_deadline(fmt: str, rules: list[tuple[str, str]], paths: list[str]) -> None:
    from deadline.job_attachments._path_mapping import _PathMappingRuleApplier
    from deadline.job_attachments.models import PathMappingRule

    doc = {"version": "pathmapping-1.0", "path_mapping_rules": [
        {"source_path_format": fmt, "source_path": s, "destination_path": d} for s, d in rules]}
    ours = PathMappingRules.from_json(json.dumps(doc))
    theirs = _PathMappingRuleApplier([PathMappingRule(fmt.lower(), s, d) for s, d in rules])
    for path in paths:
        want = theirs._transform(path)
        assert ours.map(path) == (None if want is None else str(want)), path


def test_path_mapping_documents_and_errors(tmp_path: Path) -> None:
    bare = [{"source_path_format": "posix", "source_path": "/a", "destination_path": "/b"}]
    assert PathMappingRules.from_json(json.dumps(bare)).map("/a/x") == "/b/x"
    mixed = PathMappingRules.from_json([{"source_path_format": "WINDOWS", "source_path": "Z:\\r", "destination_path": "/w"},
                                        {"source_path_format": "POSIX", "source_path": "/r", "destination_path": "/p"}])
    assert (mixed.map("z:\\R\\f"), mixed.map("/r/f")) == ("/w/f", "/p/f")  # each path against its own format
    for bad, field in ((b"{", "not JSON"), ('{"version": "x"}', "unknown version"), ("[{}]", "rule 0"),
                       ('[{"source_path_format": "mac", "source_path": "/", "destination_path": "/"}]', "POSIX or")):
        with pytest.raises(ConfigError, match=field):
            PathMappingRules.from_json(bad, where="rules.json")
    with pytest.raises(ConfigError, match=r"nope\.json"):
        PathMappingRules.load(tmp_path / "nope.json")
    loc = FileSystemLocation.parse("Projects=C:\\Projects:SHARED")
    assert (loc.name, loc.path, loc.type) == ("Projects", "C:\\Projects", "SHARED")
    assert FileSystemLocation.parse("Assets=/mnt/assets").type == "LOCAL"


# -- a job: two steps, several tasks, a rerun into another root, non-ASCII names ------------------------

ROOT_A, ROOT_B = "/projects/scène/renders", "/projects/comp"
IDS = {"farm_id": "farm-1", "queue_id": "queue-1", "job_id": "job-1"}


def _outputs(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def _write_job(store: fscas.Store, work: Path) -> None:
    """Step 1: tasks 1-3 write ROOT_A; task-2 ran twice, the rerun wrote ROOT_B only. Step 2: one task, ROOT_B."""
    t0 = 1700000000.0
    runs = [("step-1", "task-1", "sessionaction-1-1", t0, ROOT_A, {"frames/f001.exr": b"t1", "日本/a.txt": b"jp"}),
            ("step-1", "task-2", "sessionaction-2-1", t0 + 1, ROOT_A, {"frames/f002.exr": b"t2 first"}),
            ("step-1", "task-3", "sessionaction-3-1", t0 + 2, ROOT_A, {"frames/f003.exr": b"t3"}),
            ("step-1", "task-2", "sessionaction-2-2", t0 + 10, ROOT_B, {"comp/c002.exr": b"t2 rerun"}),
            ("step-2", "task-1", "sessionaction-s2-1", t0 + 20, ROOT_B, {"comp/final.mov": b"final"})]
    for i, (step, task, action, start, root, files) in enumerate(runs):
        folder = _outputs(work / f"run{i}", files)
        store.put_output(snapshot(folder, hash_cache=False), folder, source_root=root, step_id=step, task_id=task,
                         session_action_id=action, start_time=start, **IDS)
        time.sleep(1.1)  # S3 LastModified has one-second resolution: merge order follows it


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.deadline
# The reference we match is Deadline's own worker code, which it has marked deprecated.
@pytest.mark.filterwarnings(r"ignore:sync_(inputs|outputs) is deprecated:DeprecationWarning")
def test_download_matches_deadline_output_downloader(moto_server: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from deadline.job_attachments.asset_sync import AssetSync, _get_unique_dest_dir_name
    from deadline.job_attachments.download import OutputDownloader
    from deadline.job_attachments.models import (
        Attachments,
        FileConflictResolution,
        JobAttachmentS3Settings,
        ManifestProperties,
        PathFormat,
    )

    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    url = moto_server.store_url(bucket, "DeadlineRoot")
    with fscas.open_store(url, existence_cache=False) as store:
        _write_job(store, tmp_path / "work")
    # one more task written by Deadline's own worker code: step-2/task-2 into ROOT_A
    session = tmp_path / "session"
    local = session / _get_unique_dest_dir_name(ROOT_A)
    _outputs(local, {"frames/deadline-worker.exr": b"from the worker"})
    settings = JobAttachmentS3Settings(bucket, "DeadlineRoot")
    attachments = Attachments(manifests=[ManifestProperties(rootPath=ROOT_A, rootPathFormat=PathFormat.POSIX,
                                                            outputRelativeDirectories=["frames"])])
    AssetSync("farm-1", boto3_session=boto3.Session()).sync_outputs(
        settings, attachments, "queue-1", "job-1", "step-2", "task-2", "sessionaction-s2-2", time.time(), session)
    # Deadline's downloader, each root mapped to a local folder
    theirs = OutputDownloader(settings, "farm-1", "queue-1", "job-1", session=boto3.Session())
    for root, name in ((ROOT_A, "a"), (ROOT_B, "b")):
        theirs.set_root_path(root, str(tmp_path / "deadline" / name))
    theirs.download(file_conflict_resolution=FileConflictResolution.OVERWRITE)
    # fscas through the CLI, the same roots mapped
    from cli_runner import run_fscas

    r = run_fscas("outputs", "download", "--store", url, "--farm-id", "farm-1", "--queue-id", "queue-1", "--job-id",
                  "job-1", "--root", f"{ROOT_A}={tmp_path / 'fscas' / 'a'}", "--root",
                  f"{ROOT_B}={tmp_path / 'fscas' / 'b'}", "--json", home=tmp_path, extra=moto_server.env())
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["manifests"] == 5  # task-2's first run is not selected: Deadline's rule
    for name in ("a", "b"):
        assert _tree(tmp_path / "fscas" / name) == _tree(tmp_path / "deadline" / name), name
    assert _tree(tmp_path / "fscas" / "a")["frames/deadline-worker.exr"] == b"from the worker"
    assert "frames/f002.exr" not in _tree(tmp_path / "fscas" / "a")  # D4: the rerun dropped ROOT_A of task-2
    # better than Deadline on request: keep the earlier run's root the rerun did not write
    r = run_fscas("outputs", "download", "--store", url, "--farm-id", "farm-1", "--queue-id", "queue-1", "--job-id",
                  "job-1", "--root", f"{ROOT_A}={tmp_path / 'keep' / 'a'}", "--root", f"{ROOT_B}={tmp_path / 'keep' / 'b'}",
                  "--keep-earlier-roots", "--json", home=tmp_path, extra=moto_server.env())
    assert r.returncode == 0, r.stderr
    assert _tree(tmp_path / "keep" / "a")["frames/f002.exr"] == b"t2 first"


@pytest.fixture
def job_store(tmp_path: Path) -> Any:
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        _write_job(store, tmp_path / "work")
        yield store


def test_unmapped_roots_are_refused_by_name(job_store: fscas.Store, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no local folder for the asset root") as e:
        job_store.download_outputs(**IDS)
    assert ROOT_A in str(e.value) and ROOT_B in str(e.value)
    assert not (tmp_path / "projects").exists() and not Path(ROOT_A).exists()
    with pytest.raises(ConfigError, match=rf"root\(s\) {ROOT_B}"):  # one root mapped is not enough
        job_store.download_outputs(**IDS, dest_for_root={ROOT_A: str(tmp_path / "a")})
    assert not (tmp_path / "a").exists()  # nothing written before the refusal


def test_rules_locations_and_precedence(job_store: fscas.Store, tmp_path: Path) -> None:
    rules = PathMappingRules.from_json([{"source_path_format": "POSIX", "source_path": "/projects",
                                         "destination_path": str(tmp_path / "ruled")}])
    s = job_store.download_outputs(**IDS, path_mapping=rules)
    assert s.files == 5 and s.destinations == {"/projects": (str(tmp_path / "ruled"),)}  # the rule's source
    assert (tmp_path / "ruled" / "scène" / "renders" / "日本" / "a.txt").read_bytes() == b"jp"
    assert (tmp_path / "ruled" / "comp" / "comp" / "final.mov").read_bytes() == b"final"
    # an explicit root wins over the rules
    s = job_store.download_outputs(**IDS, path_mapping=rules, dest_for_root={ROOT_B: str(tmp_path / "explicit")})
    assert s.destinations[ROOT_B] == (str(tmp_path / "explicit"),)


def test_storage_profile_location_names_map_roots(tmp_path: Path) -> None:
    src = _outputs(tmp_path / "out", {"shot/f.exr": b"x"})
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        store.put_output(snapshot(src, hash_cache=False), src, source_root="/mnt/Projects", step_id="step-1",
                         task_id="task-1", session_action_id="sessionaction-1", start_time=1.5,
                         file_system_location_name="ProjectFiles", **IDS)
        [o] = store.output_manifests(**IDS)
        assert o.file_system_location_name == "ProjectFiles"
        store.download_outputs(**IDS, file_system_locations={"ProjectFiles": str(tmp_path / "here")})
        assert (tmp_path / "here" / "shot" / "f.exr").read_bytes() == b"x"
        rules = PathMappingRules.from_json([{"source_path_format": "POSIX", "source_path": "/mnt/Projects",
                                             "destination_path": str(tmp_path / "rules")}])
        store.download_outputs(**IDS, path_mapping=rules, file_system_locations={"ProjectFiles": str(tmp_path / "no")})
        assert (tmp_path / "rules" / "shot" / "f.exr").exists() and not (tmp_path / "no").exists()  # rules win


def test_incremental_download_with_a_state_file(job_store: fscas.Store, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    dest = {ROOT_A: str(tmp_path / "a"), ROOT_B: str(tmp_path / "b")}
    first = job_store.download_outputs(**IDS, dest_for_root=dest, since=state)
    assert (first.manifests, first.files) == (4, 5) and json.loads(state.read_text())["job_id"] == "job-1"
    again = job_store.download_outputs(**IDS, dest_for_root=dest, since=state)
    assert (again.manifests, again.files, again.unchanged) == (0, 0, 4)
    src = _outputs(tmp_path / "new", {"frames/f004.exr": b"t4"})
    job_store.put_output(snapshot(src, hash_cache=False), src, source_root=ROOT_A, step_id="step-1", task_id="task-4",
                         session_action_id="sessionaction-4-1", start_time=1700000100.0, **IDS)
    third = job_store.download_outputs(**IDS, dest_for_root=dest, since=state)
    assert (third.manifests, third.files) == (1, 1) and (tmp_path / "a" / "frames" / "f004.exr").read_bytes() == b"t4"
    with pytest.raises(ConfigError, match="another download"):
        job_store.download_outputs(**{**IDS, "job_id": "job-2"}, dest_for_root=dest, since=state)


KILLER = r"""
import sys, fscas
from fscas.backends import open_backend
store = fscas.open_store(sys.argv[1], existence_cache=False)
print("started", flush=True)
store.download_outputs("farm-1", "queue-1", "job-1", dest_for_root={sys.argv[3]: sys.argv[4]}, since=sys.argv[2])
print("finished", flush=True)
"""


def test_kill_during_an_incremental_download_then_rerun(tmp_path: Path) -> None:
    src = _outputs(tmp_path / "out", {f"big{i}.bin": os.urandom(8 * 2**20) for i in range(12)})
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        store.put_output(snapshot(src, hash_cache=False), src, source_root="/r", step_id="step-1", task_id="task-1",
                         session_action_id="sessionaction-1", start_time=1.0, **IDS)
    state, dest = tmp_path / "state.json", tmp_path / "dest"
    p = subprocess.Popen([sys.executable, "-c", KILLER, str(tmp_path / "store"), str(state), "/r", str(dest)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(dest.glob("big*.bin")):
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    assert not state.exists() or json.loads(state.read_text())  # never half-written
    with fscas.open_store(str(tmp_path / "store"), existence_cache=False) as store:
        s = store.download_outputs(**IDS, dest_for_root={"/r": str(dest)}, since=state)
    assert s.manifests == 1 and _tree(dest) == _tree(src)
    assert not [n for n in os.listdir(dest) if n.endswith(".partial")]


def test_cli_list_and_push_with_storage_profile_locations(job_store: fscas.Store, tmp_path: Path) -> None:
    from cli_runner import run_fscas

    store = str(tmp_path / "store")
    r = run_fscas("outputs", "list", "--store", store, "--farm-id", "farm-1", "--queue-id", "queue-1", "--job-id",
                  "job-1", "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["outputs"]
    assert len(rows) == 5 and sum(row["selected"] for row in rows) == 4
    rerun = next(row for row in rows if row["session_action"] == "sessionaction-2-1")
    assert (rerun["step"], rerun["task"], rerun["selected"], rerun["files"]) == ("step-1", "task-2", False, 1)
    assert {row["asset_root"] for row in rows} == {ROOT_A, ROOT_B}
    r = run_fscas("outputs", "download", "--store", store, "--farm-id", "farm-1", "--queue-id", "queue-1",
                  "--job-id", "job-1", home=tmp_path)
    assert r.returncode == 2 and ROOT_A in r.stderr and "--root" in r.stderr and "Traceback" not in r.stderr
    # push: files under a SHARED location stay out; a LOCAL root names its location on the input manifest
    project = _outputs(tmp_path / "project", {"scene.blend": b"s", "textures/wood.png": b"w", "cache/big.bin": b"c"})
    r = run_fscas("push", str(project), "--store", store, "--json", "--file-system-location",
                  f"Project={project}:LOCAL", "--file-system-location", f"Cache={project / 'cache'}:SHARED",
                  home=tmp_path)
    assert r.returncode == 0, r.stderr
    pushed = json.loads(r.stdout)
    assert pushed["total_files"] == 2 and pushed["shared_skipped"] == ["cache/big.bin"]
    assert not job_store.has(hash_bytes(b"c")), "a SHARED file's bytes never go up, not even early"
    from fscas.runner import run_sync

    meta = run_sync(job_store.aio.backend.head(pushed["key"])).metadata
    assert meta["file-system-location-name"] == "Project"


def test_cli_list_has_a_header_and_download_names_where_files_land(job_store: fscas.Store, tmp_path: Path) -> None:
    """A rule mapping part of a root: the printed line names the rule's source, not the whole root,
    beside the folder its files really land in."""
    from cli_runner import run_fscas

    store = str(tmp_path / "store")
    ids = ["--farm-id", "farm-1", "--queue-id", "queue-1", "--job-id", "job-1"]
    r = run_fscas("outputs", "list", "--store", store, *ids, home=tmp_path)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0].split() == ["STEP/TASK", "SESSION", "ACTION", "TIME", "FILES", "BYTES",
                                                      "ASSET", "ROOT"] and len(lines) == 6, r.stdout
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": "pathmapping-1.0", "path_mapping_rules": [
        {"source_path_format": "POSIX", "source_path": f"{ROOT_A}/frames", "destination_path": str(tmp_path / "fr")},
        {"source_path_format": "POSIX", "source_path": ROOT_B, "destination_path": str(tmp_path / "b")},
        {"source_path_format": "POSIX", "source_path": f"{ROOT_A}/日本", "destination_path": str(tmp_path / "jp")}]}))
    r = run_fscas("outputs", "download", "--store", store, *ids, "--path-mapping-rules", str(rules), home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"{ROOT_A}/frames -> {tmp_path / 'fr'}" in r.stdout.splitlines(), r.stdout
    assert sorted(_tree(tmp_path / "fr")) == ["f001.exr", "f003.exr"]  # task-2's rerun dropped its ROOT_A run
    r = run_fscas("outputs", "download", "--store", store, *ids, "--root", f"{ROOT_A}={tmp_path / 'only'}",
                  "--root", f"{ROOT_B}={tmp_path / 'only-b'}", "-i", "frames/**", "-e", "**/f003.exr", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(_tree(tmp_path / "only")) == ["frames/f001.exr"] and not (tmp_path / "only-b").exists()
