"""Where the emulators keep what they are sent, and that they leave none of it behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fscas.conformance import emulators
from fscas.conformance.emulators import FakeGcsEmulator


def _upload(em: FakeGcsEmulator, bucket: str, name: str, data: bytes) -> None:
    status, body = em._http("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}", data,
                            {"Content-Type": "application/octet-stream"})
    assert status == 200, body


def _held(folder: Path, data: bytes) -> bool:
    return any(p.is_file() and p.read_bytes() == data for p in folder.rglob("*"))


@pytest.mark.skipif(not os.access("/dev/shm", os.W_OK), reason="no writable /dev/shm on this machine")
def test_fake_gcs_keeps_objects_as_files_on_tmpfs_and_removes_them_at_stop() -> None:
    # Its memory backend's cost per request grows with the bucket; files on tmpfs cost the same at
    # any size and no disk inode each.
    em = FakeGcsEmulator()
    try:
        em.start()
        assert em.objects.parent == Path("/dev/shm")
        em.create_bucket("held")
        _upload(em, "held", "a/b", b"on tmpfs")
        assert _held(em.objects, b"on tmpfs")
        status, body = em._http("GET", "/storage/v1/b/held/o/a%2Fb?alt=media")
        assert (status, body) == (200, b"on tmpfs")
    finally:
        em.stop()
    assert not em.objects.exists() and not em.workdir.exists()


def test_fake_gcs_without_a_tmpfs_keeps_objects_in_its_data_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emulators, "_memory_folder", lambda name: None)
    with FakeGcsEmulator() as em:
        assert isinstance(em, FakeGcsEmulator) and em.objects == em.workdir / "data"
        em.create_bucket("held")
        _upload(em, "held", "x", b"in the data folder")
        assert _held(em.objects, b"in the data folder")
    assert not em.workdir.exists()
