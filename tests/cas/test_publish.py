"""Publisher and fetch: Bacalhau's S3 publisher semantics on every backend, and hostile archives."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import fscas
from fscas.backends import open_backend
from fscas.conformance.plugin import unique_bucket
from fscas.errors import ConfigError, IntegrityError, UnsafePathError
from fscas.results.publisher import parse_publish_url, render_key
from fscas.runner import run_sync

NOW = datetime(2023, 9, 26, 14, 5, 30, tzinfo=UTC)


@pytest.mark.parametrize("template, compress, want", [
    ("results/{jobID}/{date}/{time}/", False, "results/abc123/20230926/140530/"),
    ("results/{jobID}/{date}/{time}", False, "results/abc123/20230926/140530/"),
    ("task123/result.tar.gz", True, "task123/result.tar.gz"),
    ("out/{jobID}-{executionID}-{nodeID}", True, "out/abc123-e-1-n-1.tar.gz"),
    ("result-{date}-{jobID}", True, "result-20230926-abc123.tar.gz"),
])
def test_key_templates(template: str, compress: bool, want: str) -> None:
    assert render_key(template, compress=compress, job_id="abc123", execution_id="e-1", node_id="n-1",
                      now=NOW) == want


@pytest.mark.parametrize("template", ["x/{jobid}", "x/{JobID}", "x/{}", "{unknown}/y"])
def test_unknown_placeholder_is_an_error(template: str) -> None:
    with pytest.raises(ConfigError, match="unknown placeholder"):
        render_key(template, compress=False, job_id="j", now=NOW)


def test_unfilled_placeholder_is_an_error() -> None:
    with pytest.raises(ConfigError, match="needs a value"):
        render_key("x/{executionID}", compress=False, job_id="j", now=NOW)


def test_bacalhau_url_options() -> None:
    base, bucket, key, options, compress = parse_publish_url(
        "s3://bucket/key,opt=endpoint=http://s3.example.com,opt=region=us-east-1,opt=compress=true")
    assert (base, bucket, key, compress) == ("s3://bucket", "bucket", "key", True)
    assert options == {"endpoint_url": "http://s3.example.com", "region": "us-east-1"}


def _results(root: Path) -> dict[str, bytes]:
    files = {"stdout": b"hello\n", "outputs/frame-001.exr": os.urandom(200_000), "outputs/deep/é.txt": b"accent",
             "empty": b"", "outputs/a+b=c d (1).txt": b"signed path", "outputs/日本 ~'!.txt": b"unicode"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _url(request: pytest.FixtureRequest, kind: str, tmp_path: Path, template: str) -> tuple[str, dict[str, Any]]:
    if kind == "file":
        return f"file://{tmp_path}/published/{template}", {}
    emulator = request.getfixturevalue({"moto": "moto_server", "seaweedfs": "seaweedfs", "gcs": "fake_gcs",
                                        "azure": "azurite"}[kind])
    bucket = unique_bucket()
    emulator.create_bucket(bucket)
    store = emulator.store_url(bucket)
    base, _, query = store.partition("?")
    return f"{base}/{template}" + (f"?{query}" if query else ""), emulator.options()


def _read(result: fscas.PublishedResult, options: dict[str, Any], key: str) -> bytes:
    scheme = result.type
    opts = {**options, **({"endpoint_url": result.endpoint} if result.endpoint and scheme in ("s3", "gs") else {})}
    b = open_backend(f"{scheme}://{result.bucket}", **opts)

    async def go() -> bytes:
        try:
            return await b.get(key)
        finally:
            await b.aclose()

    return run_sync(go())


@pytest.mark.parametrize("kind", ["file", "moto", "seaweedfs", "gcs", "azure"])
def test_archive_publish_and_fetch(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    src = tmp_path / "results"
    files = _results(src)
    (src / "link-out").symlink_to("/etc/passwd")  # never followed, never published
    url, options = _url(request, kind, tmp_path, "jobs/{jobID}/{date}")
    result = fscas.publish(src, url, compress=True, job_id="job-1", now=NOW, **options)
    assert result.key.endswith("jobs/job-1/20230926.tar.gz")
    stored = _read(result, options, result.key)
    assert result.checksum_sha256 == base64.b64encode(hashlib.sha256(stored).digest()).decode()
    with tarfile.open(fileobj=io.BytesIO(stored)) as tar:
        assert sorted(m.name for m in tar.getmembers()) == sorted(files)
    out = fscas.fetch(result, tmp_path / "fetched", **options)
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data
    assert not (out / "link-out").exists()


@pytest.mark.parametrize("kind", ["file", "moto", "seaweedfs", "gcs", "azure"])
def test_plain_publish_and_fetch(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    src = tmp_path / "results"
    files = _results(src)
    url, options = _url(request, kind, tmp_path, "plain/{jobID}")
    result = fscas.publish(src, url, job_id="job-2", now=NOW, **options)
    assert result.key.endswith("plain/job-2/") and result.checksum_sha256 == ""
    for rel, data in files.items():
        assert _read(result, options, result.key + rel) == data
    out = fscas.fetch(result, tmp_path / "fetched", **options)
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == set(files)
    single = fscas.publish(src / "stdout", url, job_id="job-3", now=NOW, **options)
    assert _read(single, options, single.key + "stdout") == b"hello\n"


def test_versioned_bucket_returns_a_version_id(moto_server: Any, tmp_path: Path) -> None:
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    moto_server.enable_versioning(bucket)
    src = tmp_path / "results"
    _results(src)
    base, _, query = moto_server.store_url(bucket).partition("?")
    result = fscas.publish(src, f"{base}/r/{{jobID}}?{query}", compress=True, job_id="v", **moto_server.options())
    assert result.version_id and result.version_id != "null"
    spec = result.as_spec()
    assert set(spec["Params"]) == {"Bucket", "Key", "Region", "Endpoint", "VersionID", "ChecksumSHA256"}
    assert spec["Type"] == "s3" and spec["Params"]["Region"] == "us-east-1"
    assert fscas.PublishedResult.from_spec(spec) == result
    assert "PublishedResult:\n  Type: \"s3\"\n  Params:\n    Bucket: " in result.to_yaml()


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "results"
    _results(src)
    result = fscas.publish(src, f"file://{tmp_path}/pub/x", compress=True)
    forged = fscas.PublishedResult.from_spec({**result.as_spec(), "Params": {
        **result.as_spec()["Params"], "ChecksumSHA256": base64.b64encode(b"\0" * 32).decode()}})
    with pytest.raises(IntegrityError, match="SHA-256"):
        fscas.fetch(forged, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _hostile(path: Path, kind: str) -> None:
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        if kind == "slip":
            evil = tarfile.TarInfo("../evil.txt")
        elif kind == "absolute":
            evil = tarfile.TarInfo(str(path.parent / "evil.txt"))
        elif kind == "symlink":
            link = tarfile.TarInfo("escape")
            link.type, link.linkname = tarfile.SYMTYPE, str(path.parent)
            tar.addfile(link)
            evil = tarfile.TarInfo("escape/evil.txt")
        elif kind == "device":
            evil = tarfile.TarInfo("dev")
            evil.type, evil.devmajor, evil.devminor = tarfile.CHRTYPE, 1, 3
        elif kind == "hardlink":
            evil = tarfile.TarInfo("hard")
            evil.type, evil.linkname = tarfile.LNKTYPE, "../../etc/passwd"
        evil.size = 0 if evil.type in (tarfile.CHRTYPE, tarfile.LNKTYPE) else 4
        tar.addfile(evil, io.BytesIO(b"evil") if evil.size else None)


@pytest.mark.parametrize("kind", ["slip", "absolute", "symlink", "device", "hardlink"])
def test_hostile_archives_write_nothing_outside(kind: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "pub").mkdir(parents=True)
    _hostile(work / "pub" / "r.tar.gz", kind)
    with pytest.raises(UnsafePathError):
        fscas.fetch(f"file://{work}/pub/r.tar.gz", work / "dest")
    assert not (work / "evil.txt").exists() and not (work / "pub" / "evil.txt").exists()
    assert not (work / "dest").exists()
    assert sorted(p.name for p in work.iterdir()) == ["pub"]  # no staging folder left behind


def _bomb(path: Path, expanded: int) -> None:
    """A tar.gz whose one member is `expanded` zero bytes: about 1,000 times smaller than it expands."""
    import gzip

    class Zeros(io.RawIOBase):
        def __init__(self, n: int) -> None:
            self.left = n

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    with gzip.open(path, "wb", compresslevel=9) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = expanded
        tar.addfile(info, io.BufferedReader(Zeros(expanded), 2**20))


def test_decompression_bomb_is_refused_with_nothing_left(tmp_path: Path) -> None:
    published = tmp_path / "published"
    published.mkdir()
    _bomb(published / "bomb.tar.gz", 512 * 2**20)
    assert (published / "bomb.tar.gz").stat().st_size * 500 < 512 * 2**20  # it really is a bomb
    url = f"file://{published}/bomb.tar.gz"
    with pytest.raises(fscas.FscasError, match="expands past the limit of 10000000 bytes"):
        fscas.fetch(url, tmp_path / "out" / "here", max_bytes=10_000_000)
    assert not (tmp_path / "out").exists()  # nothing created, no staging left beside it
    assert sorted(os.listdir(tmp_path)) == ["published"]
    out = fscas.fetch(url, tmp_path / "ok", max_bytes=600 * 2**20)
    assert (out / "zeros.bin").stat().st_size == 512 * 2**20


def test_plain_result_over_the_limit_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "results"
    files = _results(src)
    result = fscas.publish(src, f"file://{tmp_path}/published/r/{{jobID}}", job_id="j", now=NOW)
    total = sum(len(d) for d in files.values())
    with pytest.raises(fscas.FscasError, match=f"{total} bytes published, past the limit"):
        fscas.fetch(result, tmp_path / "out", max_bytes=total - 1)
    assert not (tmp_path / "out").exists()
    assert fscas.fetch(result, tmp_path / "out", max_bytes=total).is_dir()


@pytest.mark.parametrize("key", ["nothing/here/", "nothing/archive.tar.gz"])
def test_fetching_where_nothing_was_published_is_an_error(key: str, tmp_path: Path) -> None:
    (tmp_path / "published").mkdir()
    with pytest.raises(fscas.ObjectNotFound, match="nothing published there"):
        fscas.fetch(f"file://{tmp_path}/published/{key}", tmp_path / "new" / "dest")
    assert not (tmp_path / "new").exists()


def test_cli_fetch_max_size_and_nothing_published(tmp_path: Path) -> None:
    from cli_runner import run_fscas

    (tmp_path / "published").mkdir()
    _bomb(tmp_path / "published" / "bomb.tar.gz", 64 * 2**20)
    r = run_fscas("fetch", f"file://{tmp_path}/published/bomb.tar.gz", str(tmp_path / "out"), "--max-size", "10M",
                  home=tmp_path)
    assert r.returncode == 1 and "expands past the limit of 10000000 bytes" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
    r = run_fscas("fetch", f"file://{tmp_path}/published/none/", str(tmp_path / "out"), home=tmp_path)
    assert r.returncode == 1 and "nothing published there" in r.stderr and not (tmp_path / "out").exists()
    r = run_fscas("fetch", f"file://{tmp_path}/published/bomb.tar.gz", str(tmp_path / "out"), "--max-size", "lots",
                  home=tmp_path)
    assert r.returncode == 2 and "not a size" in r.stderr
