"""Where the emulators keep what they are sent, and that they leave none of it behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


def test_an_interrupted_stop_still_kills_the_server_and_removes_its_data(monkeypatch: pytest.MonkeyPatch) -> None:
    em = FakeGcsEmulator().start()
    assert isinstance(em, FakeGcsEmulator) and em.process is not None
    process, waits = em.process, []
    real_wait = process.wait

    def interrupted(timeout: float | None = None) -> int:  # a second Ctrl-C lands while it stops
        waits.append(timeout)
        if len(waits) == 1:
            raise KeyboardInterrupt
        return real_wait(timeout)

    monkeypatch.setattr(process, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        em.stop()
    assert process.poll() is not None, "the server was left running"
    assert not em.workdir.exists() and not em.objects.exists()


def test_ctrl_c_twice_in_a_row_leaves_nothing(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    before = set(shm.glob("fscas-fake-gcs-server-*")) if shm.is_dir() else set()
    env = {**os.environ, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "fscas", "emulator", "run", "gcs"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("store URL: ")
        ours = (set(shm.glob("fscas-fake-gcs-server-*")) if shm.is_dir() else set()) - before
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
        proc.send_signal(signal.SIGINT)  # impatient: while the first one cleans up
        assert proc.wait(60) == 0
    finally:
        proc.kill()
    time.sleep(0.2)
    assert not list(tmp_path.glob("fscas-fake-gcs-server-*"))
    assert not any(p.exists() for p in ours)
    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert ours and not any(str(p) in running for p in ours)
