"""Moving bytes between local files and a backend, hashed as they move: the sizes both ways, the
lanes transfers run in, progress, and the upload side (downloads are `fetching`'s).

Upload: a file is read once; its bytes are hashed as they are read and the object is committed
only if they hash to the manifest's digest (a file changed since its snapshot is refused: Deadline
defect D1).
"""

from __future__ import annotations

import asyncio
import os
import stat as stat_mod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import xxhash

from fscas.backends import Backend
from fscas.backends.base import FileBody
from fscas.errors import IntegrityError, SnapshotError, UnsafePathError
from fscas.keys import data_key
from fscas.paths import contains

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

__all__ = [
    "PART",
    "Reach",
    "files_done_of",
    "first_error",
    "in_lanes",
    "open_source",
    "progress_of",
    "send_file",
]

PART = 16 * 2**20
"""Objects up to this size move in one request; larger ones stream in parts of this size."""
GET_PART = 8 * 2**20
"""On a backend without `StreamingGet`, larger objects come in ranged GETs of this size, two ahead:
half the upload part, since a GET's body is read whole into memory before it is hashed and written."""
READ_CHUNK = 8 * 2**20
"""Larger files are read for upload in chunks of this size (S3's default part), one chunk ahead."""
STREAM_BUFFER = 4 * 2**20
"""A streamed download is hashed and written in buffers of this size, on a worker thread."""
INLINE = 256 * 2**10
"""Files up to this size are read and written on the event loop itself: a page-cache copy of a few
KiB costs less than handing the GIL to a worker thread and back, which with thousands of small
files in flight stalls every socket send and receive (measured: 2.8 s of 14 s in `send`)."""

Progress = Callable[[int], None]
T = TypeVar("T")


def progress_of(callback: Callback | None, total: int) -> Progress:
    """The progress function of a transfer of `total` bytes: the callback's, sized first; or a no-op."""
    if callback is None:
        return _ignore
    callback.set_size(total)
    return callback.relative_update  # type: ignore[no-any-return]


def _ignore(inc: int = 1) -> None:
    pass


def files_done_of(callback: Callback | None, files: int) -> Callable[[], None]:
    """What to call as each of `files` files is done, for a callback that counts files as well as
    bytes (one with `set_files(n)` and `file_done()`, as the CLI's progress bar has); else a no-op.
    A byte count alone hides thousands of small files behind a few large ones."""
    if callback is None or not hasattr(callback, "file_done"):
        return _ignore
    callback.set_files(files)
    return callback.file_done  # type: ignore[no-any-return]


async def in_lanes(fn: Callable[[T], Awaitable[None]], *lanes: tuple[Iterable[T], int]) -> None:
    """Run `fn` on every item of every lane, each lane `(items, workers)` with that many workers.

    A fixed number of tasks, not one per item: a million files would otherwise be a million
    coroutine frames in memory at once. Separate lanes let small files flow while the few workers
    of the large-file lane hold their memory-heavy transfers. The first error cancels the rest and
    is raised as itself.
    """

    async def worker(items: Iterator[T]) -> None:
        for item in items:
            await fn(item)

    try:
        async with asyncio.TaskGroup() as group:
            for items, workers in lanes:
                shared = iter(items)
                for _ in range(max(1, workers)):
                    group.create_task(worker(shared))
    except BaseExceptionGroup as eg:
        raise first_error(eg) from None


def first_error(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error of a task group (a cancellation only if nothing else failed)."""
    errors = [e for e in _leaves(eg) if not isinstance(e, asyncio.CancelledError)]
    return errors[0] if errors else _leaves(eg)[0]


def _leaves(eg: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in eg.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


def open_source(path: str | os.PathLike[str], root_real: str) -> BinaryIO:
    """Open a file to upload, refusing one whose real location is outside the root.

    The check is on the file actually opened (its `/proc/self/fd` link where the system has one,
    else `realpath` first): a link inside the root is read through, one out of it is refused, and
    a folder swapped for a link between a check and the open cannot slip a file in.

    Raises:
        UnsafePathError: the path resolves outside the root (a link out).
        SnapshotError: the file cannot be opened (missing, unreadable, not a regular file).
    """
    fd = -1
    try:
        if not _PROC_FD:
            real = os.path.realpath(path)
            if not contains(root_real, real):
                raise UnsafePathError(f"{os.fspath(path)}: resolves to {real}, outside the upload root")
            path = real
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a fifo must not block
        if _PROC_FD and not contains(root_real, real := os.readlink(f"/proc/self/fd/{fd}")):
            raise UnsafePathError(f"{os.fspath(path)}: resolves to {real}, outside the upload root")
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
            raise SnapshotError(f"{os.fspath(path)}: cannot be read for upload: not a regular file")
    except OSError as e:
        if fd >= 0:
            os.close(fd)
        if isinstance(e, SnapshotError):
            raise
        raise SnapshotError(f"{os.fspath(path)}: cannot be read for upload: {e.strerror}") from e
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return os.fdopen(fd, "rb", buffering=0)


_PROC_FD = os.path.isdir("/proc/self/fd")


async def send_file(backend: Backend, path: str | os.PathLike[str], root_real: str, digest: str, size: int,
                    progress: Progress) -> None:
    """Upload the file at `path` as `Data/<digest>.xxh128`, refusing it if its bytes do not hash to `digest`.

    Raises:
        IntegrityError: the file's size or bytes differ from the manifest (changed since the snapshot).
    """
    if size <= PART:
        data = (_read_checked(path, root_real, digest, size) if size <= INLINE
                else await asyncio.to_thread(_read_checked, path, root_real, digest, size))
        await backend.put(data_key(digest), data)
        progress(size)
        return
    f = await asyncio.to_thread(open_source, path, root_real)
    reach = Reach(progress)
    try:
        await backend.put(data_key(digest), FileBody(size, lambda counted: _verified_chunks(
            f, path, digest, size, reach if counted else _ignore)))
    finally:
        f.close()


class Reach:
    """Progress of a file that may be read more than once (a checksum pass, a retried request): each
    byte counts once, when a reading first gets past it."""

    __slots__ = ("progress", "top")

    def __init__(self, progress: Progress) -> None:
        self.progress, self.top = progress, 0

    def __call__(self, offset: int) -> None:
        if offset > self.top:
            self.progress(offset - self.top)
            self.top = offset


def _read_checked(path: str | os.PathLike[str], root_real: str, digest: str, size: int) -> bytes:
    with open_source(path, root_real) as f:
        data = f.read(size + 1)
    _check(path, digest, size, len(data), xxhash.xxh3_128_hexdigest(data))
    return data


async def _verified_chunks(f: BinaryIO, path: str | os.PathLike[str], digest: str, size: int,
                           reach: Callable[[int], None]) -> AsyncIterator[bytes]:
    # From the start each time (a FileBody is read again), one chunk of read-ahead: the last chunk is
    # only yielded once the whole file hashed right, so a backend that sees this iterator raise never
    # commits the object. `reach(offset)` after each chunk is handed on.
    h = xxhash.xxh3_128()

    def read(first: bool = False) -> bytes:
        try:
            if first:
                f.seek(0)
            chunk = f.read(READ_CHUNK)
        except OSError as e:  # the file's error, not the store's (the backend may be reading it mid-request)
            raise SnapshotError(f"{os.fspath(path)}: cannot be read for upload: {e.strerror}") from e
        h.update(chunk)
        return chunk

    done = 0
    chunk = await asyncio.to_thread(read, True)
    while chunk:
        following = await asyncio.to_thread(read)
        done += len(chunk)
        if not following:
            _check(path, digest, size, done, h.hexdigest())
        yield chunk
        reach(done)
        chunk = following


def _check(path: str | os.PathLike[str], digest: str, size: int, got_size: int, got_digest: str) -> None:
    if got_size != size:
        raise IntegrityError(f"{path}: {got_size} bytes, the manifest says {size}: changed since its snapshot")
    if got_digest != digest:
        raise IntegrityError(f"{path}: hashes to {got_digest}, the manifest says {digest}: changed since its snapshot")
