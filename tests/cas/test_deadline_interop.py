"""Interop with the real `deadline` package on a moto server: each reads what the other wrote."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from deadline.job_attachments.asset_manifests._create_manifest import _create_manifest_for_single_root
from deadline.job_attachments.asset_manifests.decode import decode_manifest
from deadline.job_attachments.download import download_files_from_manifests
from deadline.job_attachments.models import FileConflictResolution, JobAttachmentS3Settings, ManifestProperties
from deadline.job_attachments.upload import S3AssetUploader

import fscas
from fscas.conformance.plugin import unique_bucket
from fscas.keys import output_metadata
from fscas.manifests import snapshot


@pytest.fixture
def moto_env(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    return moto_server, bucket


def _tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"a" * 10, "sub/b.bin": os.urandom(9 * 2**20), "sub/é.txt": b"accent", "empty": b""}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_fscas_push_is_downloaded_by_deadline(moto_env: Any, tmp_path: Path) -> None:
    emulator, bucket = moto_env
    src = tmp_path / "src"
    files = _tree(src)
    with fscas.open_store(emulator.store_url(bucket, "DeadlineRoot"), existence_cache=False) as store:
        key, digest, _ = store.push(snapshot(src, hash_cache=False), src, farm_id="farm-1", queue_id="queue-1")
    s3 = boto3.client("s3")
    raw = s3.get_object(Bucket=bucket, Key=f"DeadlineRoot/{key}")["Body"].read()
    assert fscas.manifest_hash(raw) == digest
    dest = tmp_path / "dest"
    download_files_from_manifests(bucket, {str(dest): decode_manifest(raw.decode())}, cas_prefix="DeadlineRoot/Data",
                                  session=boto3.Session(), conflict_resolution=FileConflictResolution.OVERWRITE)
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data


def test_deadline_upload_is_pulled_by_fscas(moto_env: Any, tmp_path: Path) -> None:
    emulator, bucket = moto_env
    src = tmp_path / "src"
    files = _tree(src)
    theirs = _create_manifest_for_single_root(files=[str(src / r) for r in files], root=str(src),
                                              hash_cache_dir=str(tmp_path / "dl-cache"))
    uploader = S3AssetUploader(boto3.Session(), s3_max_pool_connections=10, small_file_threshold_multiplier=20)
    partial_key, manifest_digest = uploader.upload_assets(
        JobAttachmentS3Settings(bucket, "DeadlineRoot"), theirs, src,
        partial_manifest_prefix="farm-1/queue-1/Inputs/0123456789abcdef0123456789abcdef",
        s3_check_cache_dir=str(tmp_path / "dl-s3cache"))
    ours = snapshot(src, hash_cache=False)
    with fscas.open_store(emulator.store_url(bucket, "DeadlineRoot"), existence_cache=False) as store:
        key = f"Manifests/{partial_key}"
        pulled = store.get_manifest(key)
        assert fscas.encode(pulled) == fscas.encode(ours)  # same manifest from both snapshotters
        assert fscas.manifest_hash(fscas.encode(pulled)) == manifest_digest
        assert key == fscas.keys.input_manifest_key("farm-1", "queue-1", str(src),
                                                    guid="0123456789abcdef0123456789abcdef")
        store.download(pulled, tmp_path / "dest")
    for rel, data in files.items():
        assert (tmp_path / "dest" / rel).read_bytes() == data
    # Same Data keys as fscas writes: nothing missing when fscas uploads the same tree.
    listed = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="DeadlineRoot/Data/")["Contents"]}
    assert listed == {f"DeadlineRoot/Data/{p.hash}.xxh128" for p in ours.paths}


@pytest.mark.parametrize("root, fsl", [("/mnt/projects/shot_010", None), ("/mnt/projects/scène 日本", "ProjectFiles"),
                                       ("C:\\Users\\ren\\out", "Windows Share")])
def test_output_metadata_equals_deadline(root: str, fsl: str | None) -> None:
    from deadline.job_attachments.models import PathFormat

    theirs = ManifestProperties(rootPath=root, rootPathFormat=PathFormat.POSIX, fileSystemLocationName=fsl)
    assert output_metadata(root, fsl) == theirs.as_output_metadata()["Metadata"]
