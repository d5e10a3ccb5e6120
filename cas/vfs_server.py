"""The process that serves a VIRTUAL session's mount (`python -m fscas.vfs_server`), and starting and
ending it from `fscas session start|finish`.

A mount must outlive the command that made it, so each root is served by a process of its own,
started detached; its spec (the store's URL and options, credentials among them) goes on stdin,
never on a command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fscas.errors import ConfigError
from fscas.fuse_bridge import load, serve
from fscas.vfs import overlay_operations

if TYPE_CHECKING:
    from fscas.manifests import Manifest
    from fscas.store import AsyncStore

__all__ = ["mount_overlay", "unmount"]

_READY = 30.0  # seconds a mount may take to appear (or to go away)


def mount_overlay(store: AsyncStore, manifest: Manifest, mountpoint: str | os.PathLike[str],
                  work: str | os.PathLike[str]) -> int:
    """Mount `manifest` of `store` at `mountpoint` with `work`/upper as its writable layer, served
    by a process of its own; return that process's id once the mount is there.

    Raises:
        ConfigError: the store was not opened from a URL (the server process opens it again), the
            mountpoint is not an empty folder, or the mount did not come up (its log's last line).
    """
    from fscas.manifests import encode

    if store.opened_with is None:
        raise ConfigError(f"{store.url}: a VIRTUAL session needs a store opened from a URL or folder, which the "
                          "mount's own process opens again")
    load("a VIRTUAL session")
    target, folder = Path(mountpoint), Path(work)
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise ConfigError(f"{target}: a VIRTUAL root is mounted on an empty folder; this one holds files")
    (folder / "upper").mkdir(parents=True, exist_ok=True)
    (folder / "lower.manifest").write_bytes(encode(manifest))
    url, options = store.opened_with
    spec = {"store": url, "options": options,
            "manifest": str(folder / "lower.manifest"), "upper": str(folder / "upper"), "mountpoint": str(target)}
    log = open(folder / "vfs.log", "wb")  # noqa: SIM115 - the server process keeps writing to it
    try:  # the spec (credentials among the options) goes on stdin, never on a command line
        proc = subprocess.Popen([sys.executable, "-m", "fscas.vfs_server"], stdin=subprocess.PIPE, stdout=log,
                                stderr=log, start_new_session=True)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
    finally:
        log.close()
    deadline = time.monotonic() + _READY
    while not os.path.ismount(target):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            tail = (folder / "vfs.log").read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ConfigError(f"{target}: the VIRTUAL mount did not come up: {tail[0]}")
        time.sleep(0.05)
    return proc.pid


def unmount(mountpoint: str | os.PathLike[str], pid: int | None) -> None:
    """Unmount `mountpoint` (fusermount) and wait for its server process `pid` to end."""
    target = os.fspath(mountpoint)
    if os.path.ismount(target):
        tool = shutil.which("fusermount3") or shutil.which("fusermount")
        command = [tool, "-u", target] if tool else ["umount", target]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 and os.path.ismount(target):
            raise ConfigError(f"{target}: cannot unmount: {done.stderr.strip() or done.returncode}")
    deadline = time.monotonic() + _READY
    while pid is not None and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


def _serve() -> None:
    """`python -m fscas.vfs_server`: read the spec on stdin, serve the mount until it is unmounted."""
    from fscas.fs import FscasFileSystem

    spec = json.loads(sys.stdin.read())
    fs = FscasFileSystem(spec["store"], spec["manifest"], skip_instance_cache=True, **spec["options"])
    fs.manifest  # noqa: B018 - a bad manifest is an error before anything is mounted
    try:
        serve(overlay_operations(fs, spec["upper"]), spec["mountpoint"], snapshot=False)
    finally:
        fs.store.close()


if __name__ == "__main__":
    _serve()
