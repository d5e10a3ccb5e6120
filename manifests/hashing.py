"""Content hashing: xxh3_128, seed 0, 32 lowercase hex (docs/reference/deadline-job-attachments.md §2)."""

from __future__ import annotations

import errno
import os
import stat as stat_mod

import attrs
import xxhash

from fscas.errors import SnapshotError

__all__ = ["EMPTY_HASH", "FileDigest", "hash_bytes", "hash_open_file", "hash_path", "hash_path_reading"]

#: xxh3_128(b"") — the CAS key of every empty file.
EMPTY_HASH = "99aa06d3014798d86001c324468d497f"
#: Reads of 1 MiB: large enough that xxhash (which releases the GIL) and the read syscall dominate,
#: small enough to keep peak memory per thread trivial. Deadline reads 8 KiB (§2).
CHUNK = 1 << 20
#: Files at most this large are read with one os.read call.
SMALL = 256 << 10


def hash_bytes(data: bytes | bytearray | memoryview) -> str:
    """Return the xxh3_128 hex digest of `data`."""
    return xxhash.xxh3_128_hexdigest(data)


@attrs.frozen(slots=True)
class FileDigest:
    """A file's hash with the stat it was taken under (from `fstat` on the open descriptor)."""

    hash: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    dev: int


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns, a.st_ino) == (b.st_size, b.st_mtime_ns, b.st_ctime_ns, b.st_ino)


def hash_open_file(fd: int, *, buffer: bytearray | None = None) -> tuple[str, os.stat_result]:
    """Hash an open regular file; return the digest and the stat the bytes belong to.

    The file is `fstat`ed before and after reading; if it changed meanwhile the read is retried,
    so the digest always matches the returned stat (never a torn read).

    Raises:
        SnapshotError: the file kept changing while being read, or is not a regular file.
    """
    digest, st, _ = _hash_fd(fd, buffer)
    return digest, st


def _hash_fd(fd: int, buffer: bytearray | None, cold: list[bool] | None = None
             ) -> tuple[str, os.stat_result, bytes | None]:
    """`hash_open_file`, plus the bytes hashed when the file is small (read whole): None for larger.
    With `cold`, a small file is read asking first for cached pages only, and `cold[0]` says whether
    any had to come from the disk."""
    for _ in range(3):
        before = os.fstat(fd)
        if not stat_mod.S_ISREG(before.st_mode):
            raise SnapshotError(f"not a regular file (fd {fd})")
        os.lseek(fd, 0, os.SEEK_SET)
        data: bytes | None = None
        if before.st_size <= SMALL:
            # +1 notices growth past the stat
            data = os.read(fd, before.st_size + 1) if cold is None else _read_noting(fd, before, cold)
            digest = xxhash.xxh3_128_hexdigest(data)
        else:
            digest = _hash_large(fd, buffer if buffer is not None else bytearray(CHUNK))
        if _same(before, os.fstat(fd)):
            return digest, before, data
    raise SnapshotError("file keeps changing while it is read")


_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_WAITS_ALWAYS: set[int] = set()
"""Devices whose filesystem refuses RWF_NOWAIT reads (read as usual there, never noted cold)."""


def _read_noting(fd: int, st: os.stat_result, cold: list[bool]) -> bytes:
    """The file's bytes (its stat's size + 1 asked); `cold[0]` set if the page cache lacked any.

    Linux's `preadv(RWF_NOWAIT)` answers from the page cache or fails with EAGAIN, without a syscall
    more when the file is cached: a snapshot learns whether its reads wait on the disk, and reads in
    parallel only then (`fscas.manifests.readers`)."""
    want = st.st_size + 1
    if not _NOWAIT or st.st_dev in _WAITS_ALWAYS:
        return os.read(fd, want)
    buf = bytearray(want)
    try:
        got = os.preadv(fd, [buf], 0, _NOWAIT)
    except BlockingIOError:
        cold[0] = True
        return os.read(fd, want)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        _WAITS_ALWAYS.add(st.st_dev)
        return os.read(fd, want)
    if got < st.st_size:  # only part was cached
        cold[0] = True
        return bytes(memoryview(buf)[:got]) + os.pread(fd, want - got, got)
    return bytes(memoryview(buf)[:got])


def _hash_large(fd: int, buf: bytearray) -> str:
    h = xxhash.xxh3_128()
    view = memoryview(buf)
    with open(fd, "rb", buffering=0, closefd=False) as f:
        while n := f.readinto(view):
            h.update(view[:n])
    return h.hexdigest()


def hash_path(path: str | os.PathLike[str], *, follow_symlinks: bool = True) -> FileDigest:
    """Open and hash the file at `path`.

    Raises:
        FileNotFoundError: the file does not exist (left unwrapped so callers can skip it).
        SnapshotError: it cannot be read, is not a regular file, or keeps changing.
    """
    return _hash_path(path, follow_symlinks, None)[0]


def hash_path_reading(path: str | os.PathLike[str], *, follow_symlinks: bool = True
                      ) -> tuple[FileDigest, bytes | None, bool]:
    """`hash_path`, plus the very bytes hashed when the file is at most `SMALL` (read whole), else None
    (a caller that sends them sends what the digest names, whatever happens to the file afterwards),
    and whether they had to come from the disk rather than the page cache (known on Linux; elsewhere,
    and for larger files, False)."""
    cold = [False]
    digest, data = _hash_path(path, follow_symlinks, cold)
    return digest, data, cold[0]


def _hash_path(path: str | os.PathLike[str], follow_symlinks: bool, cold: list[bool] | None
               ) -> tuple[FileDigest, bytes | None]:
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise SnapshotError(f"{os.fsdecode(path)}: cannot open: {e.strerror}") from e
    try:
        digest, st, data = _hash_fd(fd, None, cold)
    except SnapshotError as e:
        raise SnapshotError(f"{os.fsdecode(path)}: {e}") from e
    except OSError as e:
        raise SnapshotError(f"{os.fsdecode(path)}: cannot read: {e.strerror}") from e
    finally:
        os.close(fd)
    return FileDigest(digest, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev), data
