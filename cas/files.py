"""Local file writes that never leave a half-written file under its final name."""

from __future__ import annotations

import contextlib
import errno
import os

from fscas.errors import ConfigError, FscasError

__all__ = ["TEMP_SUFFIX", "atomic_write_bytes", "cannot_write", "create_temp", "remove_stale_temps", "temp_prefix"]

TEMP_SUFFIX = ".partial"


def _hostname() -> str:
    if hasattr(os, "uname"):  # POSIX: no `socket` import (the CLI's warm snapshot path counts milliseconds)
        return os.uname().nodename
    import socket

    return socket.gethostname()


_HOST = _hostname().replace("-", "_")  # once: a download names one temp file per file


def temp_prefix() -> str:
    """`.fscas-<host>-<pid>-`: the prefix of this process's temp files, so a later run can tell a
    dead process's leftovers (a kill -9 mid-write) from a live one's work in progress."""
    return f".fscas-{_HOST}-{os.getpid()}-"


def create_temp(folder: str | os.PathLike[str]) -> tuple[int, str]:
    """Create and open (write-only) a new temp file of this process in `folder`: (fd, path).

    One `open` with `O_CREAT|O_EXCL|O_NOFOLLOW` and mode 0666 less the umask, the mode the final
    file should have: no `chmod` after, unlike `tempfile.mkstemp` (0600).
    """
    prefix = os.path.join(folder, temp_prefix())
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    while True:
        path = f"{prefix}{os.urandom(6).hex()}{TEMP_SUFFIX}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:  # 48 random bits: practically never
            continue


def remove_stale_temps(folder: str | os.PathLike[str]) -> int:
    """Remove the temp files that processes of this host left in `folder` when they died; return how many.

    A temp file of another host, or of a process still running, stays (it may be a write in flight).
    """
    host = _HOST
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        name = entry.name
        if not (name.startswith(f".fscas-{host}-") and name.endswith(TEMP_SUFFIX)):
            continue
        pid = name[len(f".fscas-{host}-"):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> None:
    """Write `data` to `path` through a temp file in the same folder and rename it into place.

    Readers see the old file or the whole new one, never a part. With `durable`, the bytes are
    fsynced before the rename, so they also survive a power cut; derived files that can be made
    again (a snapshot's manifest) skip that cost.
    """
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    try:
        fd, tmp = create_temp(folder)
    except OSError as e:
        raise cannot_write(target, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise cannot_write(target, e) from e
        raise


_PATH_ERRORS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS}


def cannot_write(target: str | os.PathLike[str], e: OSError) -> FscasError:
    """The fscas error for a local file that cannot be written: a bad path is the caller's input
    (`ConfigError`), a full disk is not."""
    folder = os.path.dirname(os.path.abspath(target))
    why = "its folder does not exist" if e.errno == errno.ENOENT and not os.path.isdir(folder) else e.strerror
    cls = ConfigError if e.errno in _PATH_ERRORS else FscasError
    return cls(f"{os.fspath(target)}: cannot write: {why}")
