"""Published archives: a tar.gz streamed from a folder while it uploads, and extraction that stays inside
its destination.

Links in the source folder are never followed (Bacalhau uploads their targets). Extraction refuses
absolute names, `..`, links that point out and device files (our own check of every member name,
plus tarfile's `data` filter).
"""

from __future__ import annotations

import asyncio
import gzip
import os
import queue
import tarfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fscas.errors import FscasError, IntegrityError, UnsafePathError
from fscas.paths import safe_join

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


def extract(f: Any, staging: Path, key: str, max_bytes: int) -> int:
    """Extract the tar.gz in `f` into `staging`, member by member in one pass; return the bytes written.

    Each member is checked before it is written: its name stays inside `staging`, it is no device
    or fifo, and the running total stays within `max_bytes` (a decompression bomb stops at the
    limit). The caller removes `staging` on any error, so nothing is left behind.

    Raises:
        UnsafePathError: a member would land outside `staging` or is a device.
        FscasError: the archive expands past `max_bytes`.
        IntegrityError: not a readable tar.gz.
    """
    total = 0
    try:
        with tarfile.open(fileobj=f, mode="r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in ("", "."):
                    continue
                safe_join(staging, name)  # absolute, '..', backslash, NUL
                if member.isdev() or member.isfifo():
                    raise UnsafePathError(f"{key}: {member.name!r} is a device or fifo")
                total += member.size if member.isfile() else 0
                if total > max_bytes:
                    raise FscasError(f"{key}: expands past the limit of {max_bytes} bytes (at {member.name!r}); "
                                     "nothing was kept")
                tar.extract(member, staging, filter="data")  # refuses links that point out, and their targets
    except tarfile.FilterError as e:
        raise UnsafePathError(f"{key}: archive member refused: {e}") from e
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, FscasError):
            raise
        raise IntegrityError(f"{key}: not a readable tar.gz archive: {e}") from e
    return total
