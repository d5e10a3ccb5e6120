"""`fuse_bridge`: a real FUSE mount (libfuse 3 on this machine) costs a listed file no lookup, and a
read-only snapshot no open: a file read through `fscas mount` is one trip through the daemon."""

from __future__ import annotations

import collections
import errno
import os
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fscas.fuse_bridge import load, serve

FILES = 3000  # long names: the listing needs several READDIRPLUS answers


class Counting:
    """A flat read-only folder of FILES small files, counting every operation the kernel asks for."""

    def __init__(self) -> None:
        fuse = load()
        self.error = fuse.FuseOSError
        self.calls: collections.Counter[str] = collections.Counter()
        self.names = [f"{i:05d}-{'x' * 120}" for i in range(FILES)]
        self.known = set(self.names)
        self.use_ns = True

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        self.calls["getattr"] += 1
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2}
        if path[1:] not in self.known:
            raise self.error(errno.ENOENT)
        return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": len(path), "st_mtime": 10**18}

    def readdir(self, path: str, fh: int) -> list[str]:
        self.calls["readdir"] += 1
        return [".", "..", *self.names]

    def open(self, path: str, flags: int) -> int:
        self.calls["open"] += 1
        raise self.error(errno.ENOSYS)  # as vfs's read-only overlay: no opens from here on

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        self.calls["read"] += 1
        return path.encode()[offset:offset + size]

    def flush(self, path: str, fh: int) -> None:
        self.calls["flush"] += 1
        raise self.error(errno.ENOSYS)


def test_a_listed_file_is_read_in_one_trip_and_a_long_listing_arrives_whole(tmp_path: Path) -> None:
    if load().fuse_version_major != 3:
        pytest.fail("libfuse 3 is not installed: tests/setup-system.sh installs fuse3")
    ops, mnt = Counting(), tmp_path / "mnt"
    mnt.mkdir()
    server = threading.Thread(target=serve, args=(ops, str(mnt)), kwargs={"snapshot": True}, daemon=True)
    server.start()
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(mnt):
            assert server.is_alive() and time.monotonic() < deadline, "the mount did not come up"
            time.sleep(0.02)
        listed = os.listdir(mnt)
        assert listed == ops.names  # every piece of the listing, in order, once
        after_listing = ops.calls.copy()
        for name in ops.names:
            assert (mnt / name).read_bytes() == f"/{name}".encode()
        asked = ops.calls - after_listing
        # READDIRPLUS carried the attributes: no lookup per file; the first open's ENOSYS ended opens
        # and flushes for the mount's life: what is left is one read per file
        assert asked["getattr"] == 0, asked
        assert asked["open"] == 1 and asked["flush"] <= 1, asked
        assert asked["read"] == FILES, asked
        with pytest.raises(OSError) as refused:
            (mnt / "new").write_bytes(b"x")
        assert refused.value.errno == errno.EROFS  # a snapshot is mounted read-only
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        server.join(20)
    assert not server.is_alive() and not os.path.ismount(mnt)
