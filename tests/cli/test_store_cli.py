"""`fscas push|pull|gc|attachment|manifest upload|conformance` end to end, as subprocesses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_fscas

from fscas.conformance.plugin import unique_bucket

fscas = run_fscas


def _tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a" * 100)
    (root / "sub" / "b.txt").write_bytes(b"b" * 200)


def test_push_pull_on_the_default_local_store(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    r = fscas("push", str(src), "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    pushed = json.loads(r.stdout)
    assert pushed["files"] == 2 and pushed["store"].startswith("file://") and "fscas/store" in pushed["store"]
    again = json.loads(fscas("push", str(src), "--json", home=tmp_path).stdout)
    assert again["files"] == 0 and again["skipped_files"] == 2
    r = fscas("pull", pushed["key"], str(tmp_path / "dst"), "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "dst" / "sub" / "b.txt").read_bytes() == b"b" * 200
    r = fscas("gc", "--grace", "0", "--json", home=tmp_path)
    assert json.loads(r.stdout)["unreferenced"] == []


def test_attachment_upload_download_and_errors_on_s3(moto_server: Any, tmp_path: Path) -> None:
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    store = moto_server.store_url(bucket, "root")
    src = tmp_path / "src"
    _tree(src)
    env = moto_server.env()
    m = tmp_path / "m.manifest"
    assert fscas("manifest", "snapshot", str(src), "-o", str(m), home=tmp_path).returncode == 0
    r = fscas("attachment", "upload", "-m", str(m), "-r", str(src), "--store", store, "--json", home=tmp_path,
              extra=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"] == 2
    r = fscas("manifest", "upload", str(m), "--store", store, "--prefix", "jobs", "--json", home=tmp_path, extra=env)
    key = json.loads(r.stdout)["key"]
    assert key == "Manifests/jobs/m.manifest"
    r = fscas("attachment", "download", "-m", str(m), "-d", str(tmp_path / "dst"), "--store", store,
              "--conflict", "overwrite", "--json", home=tmp_path, extra=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "dst" / "a.txt").read_bytes() == b"a" * 100
    r = fscas("pull", "Manifests/nope", str(tmp_path / "x"), "--store", store, home=tmp_path, extra=env)
    assert r.returncode == 1 and "Manifests/nope: not found" in r.stderr and "Traceback" not in r.stderr
    r = fscas("push", str(src), "--store", "s3://bkt?endpoint_urll=http://x", home=tmp_path)
    assert r.returncode == 2 and "did you mean 'endpoint_url'" in r.stderr


def test_conformance_on_memory_and_on_a_missing_bucket(moto_server: Any, tmp_path: Path) -> None:
    r = fscas("conformance", "memory://", "--check", "data_key_layout", "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr  # the `//` of memory:// survives the suite's own prefix
    assert [x["status"] for x in json.loads(r.stdout)["results"]] == ["pass"]
    missing = moto_server.store_url(unique_bucket(), "root")
    r = fscas("conformance", missing, home=tmp_path, extra=moto_server.env())
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "bucket" in r.stderr.lower(), r.stderr  # one line, not 17 FAIL rows
    assert "FAIL" not in r.stdout


def test_publish_then_fetch_by_spec_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    url = f"file://{tmp_path}/pub/{{jobID}}/{{date}},opt=compress=true"
    r = fscas("publish", str(src), url, "--job-id", "j-1", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("PublishedResult:\n  Type: \"file\"\n")
    (tmp_path / "spec.yaml").write_text(r.stdout)
    r = fscas("fetch", str(tmp_path / "spec.yaml"), str(tmp_path / "out"), "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"] == 2
    assert (tmp_path / "out" / "sub" / "b.txt").read_bytes() == b"b" * 200
    r = fscas("publish", str(src), f"file://{tmp_path}/pub/{{jobid}}", home=tmp_path)
    assert r.returncode == 2 and "unknown placeholder {jobid}" in r.stderr


@pytest.mark.parametrize("kind", ["sftp_server", "webdav_server", "ftp_server"])
def test_push_and_pull_through_sftp_webdav_and_ftp_urls(kind: str, request: pytest.FixtureRequest,
                                                         tmp_path: Path) -> None:
    server = request.getfixturevalue(kind)
    bucket = unique_bucket()
    server.create_bucket(bucket)
    url = server.cli_url(bucket, "root")  # the password is in the URL
    src = tmp_path / "src"
    _tree(src)
    r = fscas("push", str(src), "--store", url, "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    pushed = json.loads(r.stdout)
    assert pushed["files"] == 2 and server.password not in r.stdout + r.stderr
    assert pushed["store"].startswith(url.split("://")[0] + "://fscas@127.0.0.1:")
    r = fscas("pull", pushed["key"], str(tmp_path / "dst"), "--store", url, "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "dst" / "sub" / "b.txt").read_bytes() == b"b" * 200
    wrong = server.store_url(bucket, "root").replace(f"//{server.user}@", f"//{server.user}:Wrong-Pa55@", 1)
    r = fscas("pull", "Manifests/nope", str(tmp_path / "x"), "--store", wrong, home=tmp_path)
    assert r.returncode == 1 and "credentials refused" in r.stderr and "Wrong-Pa55" not in r.stderr, r.stderr


def test_attachment_download_places_manifests_by_path_mapping_rules(tmp_path: Path) -> None:
    from fscas.manifests import hash_bytes

    store = str(tmp_path / "store")
    manifests = []
    for name, source in (("a", "/mnt/shots/é"), ("b", "/mnt/comp"), ("c", "/nowhere")):
        src = tmp_path / f"src-{name}"
        src.mkdir()
        (src / f"{name}.txt").write_text(name)
        m = tmp_path / f"{hash_bytes(source.encode())}_manifest"  # a session's manifests are named so
        assert fscas("manifest", "snapshot", str(src), "-o", str(m), home=tmp_path).returncode == 0
        assert fscas("attachment", "upload", "-m", str(m), "-r", str(src), "--store", store,
                     home=tmp_path).returncode == 0
        manifests += ["-m", str(m)]
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": "pathmapping-1.0", "path_mapping_rules": [
        {"source_path_format": "POSIX", "source_path": "/mnt/shots/é", "destination_path": str(tmp_path / "A")},
        {"source_path_format": "POSIX", "source_path": "/mnt/comp", "destination_path": str(tmp_path / "B")}]}))
    r = fscas("attachment", "download", *manifests, "--path-mapping-rules", str(rules), "-d", str(tmp_path / "C"),
              "--store", store, "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"] == 3
    for folder, name in (("A", "a"), ("B", "b"), ("C", "c")):  # no rule names c's source: it goes to -d
        assert (tmp_path / folder / f"{name}.txt").read_text() == name
    r = fscas("attachment", "download", *manifests[:2], *manifests[:2], "--path-mapping-rules", str(rules),
              "--store", store, home=tmp_path)
    assert r.returncode == 2 and "one destination takes one manifest" in r.stderr
