"""Published archives: a tar.gz streamed from a folder while it uploads, and extraction that stays inside
its destination.

Links in the source folder are never followed (Bacalhau uploads their targets). Extraction writes
only folders and regular files, itself, under the destination: names that are absolute or leave it,
links, devices and fifos are refused, and headers, names and folders count against the size limit.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import queue
import stat
import tarfile
import threading
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fscas.errors import FscasError, IntegrityError, UnsafePathError
from fscas.paths import safe_path

__all__ = ["extract", "regular_files", "tar_gz_stream"]

_CHUNK = 8 * 2**20


def regular_files(src: Path, on_skip: Callable[[str, str], None] | None = None) -> list[tuple[str, Path]]:
    """(relative name, path) of the regular files under `src`.

    Links are never followed nor published (a link inside the folder could lead anywhere): each
    one, like any other file that is not a regular file, is reported to `on_skip(rel, why)`.
    """
    if src.is_file() and not src.is_symlink():
        return [(src.name, src)]
    skip = on_skip or (lambda rel, why: None)
    out = []
    for folder, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(dirs):
            if Path(folder, name).is_symlink():  # os.walk lists it but does not enter it
                skip(Path(folder, name).relative_to(src).as_posix(), "a link to a folder: links are not published")
        for name in sorted(files):
            path = Path(folder, name)
            rel = path.relative_to(src).as_posix()
            if path.is_symlink():
                skip(rel, "a link: links are not published (publish its target instead)")
            elif path.is_file():
                out.append((rel, path))
            else:
                skip(rel, "not a regular file")
    return out


class _QueueWriter:
    """A write-only file that hands its bytes to the uploader through a bounded queue."""

    def __init__(self, q: queue.Queue[bytes | BaseException | None]) -> None:
        self.q, self.buf = q, bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        if len(self.buf) >= _CHUNK:
            self.q.put(bytes(self.buf))
            self.buf.clear()
        return len(data)

    def flush(self) -> None:
        if self.buf:
            self.q.put(bytes(self.buf))
            self.buf.clear()


async def tar_gz_stream(files: list[tuple[str, Path]], digest: Any, *, level: int = 9) -> AsyncIterator[bytes]:
    """The tar.gz of `files` (see `regular_files`) at gzip `level` (1 fastest .. 9 smallest, tarfile's
    default), built on a thread while it uploads: memory stays at a few chunks."""
    q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=4)
    stop = threading.Event()

    def produce() -> None:
        try:
            writer = _QueueWriter(q)
            # Our own GzipFile under a plain tar stream: Python 3.11's "w|gz" takes no level.
            with gzip.GzipFile(fileobj=writer, mode="wb", compresslevel=level, mtime=0) as gz, \
                    tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for rel, path in files:
                    if stop.is_set():
                        return
                    tar.add(path, arcname=rel, recursive=False)
            writer.flush()
            q.put(None)
        except BaseException as e:  # handed to the consumer, which aborts the upload
            q.put(e)

    thread = threading.Thread(target=produce, name=f"fscas-tar-{uuid.uuid4().hex[:6]}", daemon=True)
    thread.start()
    try:
        while (item := await asyncio.to_thread(q.get)) is not None:
            if isinstance(item, BaseException):
                raise item
            digest.update(item)
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.01)


_NAME_MAX = 4096
"""Bytes of one member name at most (PATH_MAX)."""
_HEADER_MAX = 64 * 2**10
"""Bytes of one pax or GNU long-name header at most; tarfile reads such a header whole, so a larger
one is refused before it is read (a header bomb: one asks for gigabytes of memory)."""
_HEADER = 512  # a member's own header block, counted against the limit like its bytes
_EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
             tarfile.GNUTYPE_LONGLINK)


class _Bounded(tarfile.TarInfo):
    """A `TarInfo` that refuses an extended header above `_HEADER_MAX` before tarfile reads it."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED and self.size > _HEADER_MAX:
            raise FscasError(f"an extended header (pax or GNU long name) of {self.size} bytes, above the "
                             f"{_HEADER_MAX} this reader takes: refused before reading it")
        member: tarfile.TarInfo = super()._proc_member(archive)  # type: ignore[misc]  # private, stable since 2.x
        return member


def extract(f: Any, staging: Path, key: str, max_bytes: int) -> int:
    """Extract the tar.gz in `f` into the empty folder `staging`, member by member in one pass; return
    the bytes the archive cost.

    Only folders and regular files are written, by this function itself: no link is ever created
    or followed (an archive holding a link, a device or a fifo is refused; a published result has
    none), so no member can resolve outside `staging`, whatever tarfile's own filters would miss
    (the symlink-chain bypass of `filter="data"` fixed in CPython 3.11.13). What an archive costs
    counts against `max_bytes`: each member's header and name, each file's bytes rounded up to the
    filesystem's block, and a block per folder, so that a bomb of headers, names or empty folders
    stops at the limit like one of bytes. The caller removes `staging` on any error, so nothing is
    left behind.

    Raises:
        UnsafePathError: a member would land outside `staging`, or is a link or a special file.
        FscasError: the archive costs more than `max_bytes`, or a header or name is too large.
        IntegrityError: not a readable tar.gz.
    """
    root = os.fspath(staging)
    block = _block_size(staging)
    folders: set[str] = set()
    total = 0
    try:
        with tarfile.open(fileobj=f, mode="r:gz", tarinfo=_Bounded) as tar:
            while (member := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]  # it keeps every member read; one will do
                name = member.name.removeprefix("./").rstrip("/")
                if name in ("", "."):
                    continue
                if len(name.encode("utf-8", "surrogateescape")) > _NAME_MAX:
                    raise FscasError(f"{key}: a member name of more than {_NAME_MAX} bytes: refused")
                target = safe_path(root, name)  # absolute, drive letter, '..', backslash, NUL
                if member.issym() or member.islnk():
                    raise UnsafePathError(f"{key}: {member.name!r} is a link: archives with links are refused")
                if not (member.isfile() or member.isdir()):
                    raise UnsafePathError(f"{key}: {member.name!r} is a device, fifo or other special file")
                total += _HEADER + len(name) + (block if member.isdir() else -(-member.size // block) * block)
                if total > max_bytes:
                    raise FscasError(f"{key}: expands past the limit of {max_bytes} bytes (at {member.name!r}, "
                                     "counting headers, names and folders); nothing was kept")
                if member.isdir():
                    _folders(root, name, folders)
                else:
                    _folders(root, name.rpartition("/")[0], folders)
                    _write(tar, member, target, key)
    except (tarfile.TarError, EOFError, OSError, RecursionError, zlib.error) as e:
        if isinstance(e, FscasError):
            raise
        raise IntegrityError(f"{key}: not a readable tar.gz archive: {e or type(e).__name__}") from e
    return total


def _block_size(folder: Path) -> int:
    try:
        return max(512, os.statvfs(folder).f_bsize)
    except (AttributeError, OSError):  # Windows has no statvfs: NTFS's usual cluster
        return 4096


def _folders(root: str, rel: str, made: set[str]) -> None:
    """Make `rel` and its parents under `root`, each a real folder (never through a link: none exist)."""
    if not rel or rel in made:
        return
    _folders(root, rel.rpartition("/")[0], made)
    path = os.path.join(root, rel)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise UnsafePathError(f"{rel!r}: both a file and a folder in the archive") from None
    made.add(rel)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX; Windows has none (and no link is ever made here anyway)


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, target: str, key: str) -> None:
    """Write a regular member's bytes at `target` (a later member of the same name wins, as in tar)."""
    if os.path.lexists(target):
        if not stat.S_ISREG(os.lstat(target).st_mode):
            raise UnsafePathError(f"{key}: {member.name!r} is both a folder and a file in the archive")
        os.unlink(target)
    source = tar.extractfile(member)
    assert source is not None  # a regular member always has its bytes
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_BINARY", 0),
                 (member.mode & 0o755) | 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
    os.utime(target, (member.mtime, member.mtime))
