"""Moving bytes between local files and a backend, hashed as they move.

Upload: a file is read once; its bytes are hashed as they are read and the object is committed
only if they hash to the manifest's digest (a file changed since its snapshot is refused: Deadline
defect D1). Download: bytes are hashed as they arrive, written to a temp file beside the target,
checked for size and digest, given the manifest mtime and renamed into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat as stat_mod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import xxhash

from fscas.backends import Backend
from fscas.backends.base import FileBody, StreamingGet, retry_pause
from fscas.errors import IntegrityError, ObjectNotFound, SnapshotError, Unreachable, UnsafePathError
from fscas.files import create_temp
from fscas.keys import data_key, legacy_data_key
from fscas.paths import contains, within

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

__all__ = [
    "PART",
    "Reach",
    "fetch_to_file",
    "files_done_of",
    "first_error",
    "get_small",
    "get_verified",
    "in_lanes",
    "open_source",
    "prepare_parent",
    "progress_of",
    "ranged_chunks",
    "read_verified",
    "reserve_copy_name",
    "resumed_chunks",
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
_RESUMES = 5
"""How often a broken download stream is resumed from where it stopped before the error counts."""
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


Place = Callable[[], "str | os.PathLike[str]"]
"""Names the file a download goes to, right before its first write (on a worker thread)."""


async def fetch_to_file(backend: Backend, digest: str, size: int, place: Place, *,
                        mtime_us: int | None, progress: Progress, keep: Callable[[bytes], None] | None = None) -> None:
    """Download `Data/<digest>.xxh128` (or the legacy `Data/<digest>`), verified, into the file `place()` names.

    `place` runs on a worker thread just before the first write (it may create folders or reserve
    a name); the bytes land in a temp file beside that path, renamed into place once verified. An
    object of at most one part is verified whole in memory: `keep`, if given, is handed its bytes.

    Raises:
        ObjectNotFound: neither key exists.
        IntegrityError: the object's size or digest is wrong; the key is named, nothing is written.
    """
    if size <= PART:
        data = await get_verified(backend, digest, size)
        if keep is not None:
            keep(data)
        if size <= INLINE:
            _write_file(place, data, mtime_us)
        else:
            await asyncio.to_thread(_write_file, place, data, mtime_us)
        progress(size)
        return
    target = await asyncio.to_thread(place)
    fd, tmp = await asyncio.to_thread(create_temp, os.path.dirname(target))
    try:
        with os.fdopen(fd, "wb") as out:
            await _fetch(backend, digest, size, out, progress)
        await asyncio.to_thread(_finish, tmp, target, mtime_us)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


async def get_small(backend: Backend, digest: str, size: int) -> tuple[str, bytes]:
    """The object of `digest`, never read past the `size` the manifest promises (a server that
    sends more, or never ends, costs that much and no more)."""
    key = data_key(digest)
    end = size or None  # an empty file: one plain GET (an empty range is not a request)
    try:
        return key, await backend.get(key, end=end)
    except ObjectNotFound:
        key = legacy_data_key(digest)  # Deadline PR #167: read the pre-suffix name as a fallback
        return key, await backend.get(key, end=end)


async def get_verified(backend: Backend, digest: str, size: int) -> bytes:
    """The object of `digest` in memory (at most one part), its size and xxh3-128 checked.

    Raises:
        ObjectNotFound: neither key exists.
        IntegrityError: the object's size or digest is wrong; the key is named.
    """
    key, data = await get_small(backend, digest, size)
    if len(data) != size or xxhash.xxh3_128_hexdigest(data) != digest:
        raise IntegrityError(f"{backend.url}: {key}: {len(data)} bytes hashing to "
                             f"{xxhash.xxh3_128_hexdigest(data)}, expected {size} bytes hashing to {digest}")
    return data


def _write_file(place: Place, data: bytes, mtime_us: int | None) -> None:
    """A small file in five syscalls: open (O_EXCL, final mode), write, futimens, close, rename."""
    target = place()
    fd, tmp = create_temp(os.path.dirname(target))
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if mtime_us is not None:
                os.utime(fd, ns=(mtime_us * 1000, mtime_us * 1000))
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _finish(tmp: str, target: str | os.PathLike[str], mtime_us: int | None) -> None:
    if mtime_us is not None:
        os.utime(tmp, ns=(mtime_us * 1000, mtime_us * 1000))
    os.replace(tmp, target)


async def _fetch(backend: Backend, digest: str, size: int, out: BinaryIO, progress: Progress) -> str:
    if size > PART and isinstance(backend, StreamingGet):
        try:
            return await _fetch_streamed(backend, backend.url, data_key(digest), digest, size, out, progress)
        except ObjectNotFound:  # Deadline PR #167: read the pre-suffix name as a fallback
            return await _fetch_streamed(backend, backend.url, legacy_data_key(digest), digest, size, out, progress)
    h = xxhash.xxh3_128()
    key = data_key(digest)
    first_end = min(size, GET_PART) if size > PART else (size or None)  # small: one GET, bounded by the size
    try:
        first = await backend.get(key, end=first_end)
    except ObjectNotFound:
        key = legacy_data_key(digest)  # Deadline PR #167: read the pre-suffix name as a fallback
        first = await backend.get(key, end=first_end)
    written = len(first)
    h.update(first)
    await asyncio.to_thread(out.write, first)
    progress(len(first))
    if size > PART:  # larger objects: ranged GETs, consumed in order so the hash streams
        async with contextlib.aclosing(ranged_chunks(backend, key, size, start=written)) as parts:
            async for part in parts:
                h.update(part)
                written += len(part)
                await asyncio.to_thread(out.write, part)
                progress(len(part))
    if written != size or h.hexdigest() != digest:
        got = h.hexdigest()
        raise IntegrityError(f"{backend.url}: {key}: {written} bytes hashing to {got}, expected {size} bytes "
                             f"hashing to {digest}")
    return key


async def ranged_chunks(backend: Backend, key: str, size: int, *, start: int = 0) -> AsyncGenerator[bytes, None]:
    """The bytes of `key` from `start` to `size` in ranged GETs of `GET_PART`, two in flight, handed on
    in order (for a backend without `StreamingGet`); an empty part (the object ends early) ends them."""
    window: list[asyncio.Task[bytes]] = []
    offsets = list(range(start, size, GET_PART))
    try:
        for i in range(len(offsets)):
            while len(window) < 2 and i + len(window) < len(offsets):
                s = offsets[i + len(window)]
                window.append(asyncio.create_task(backend.get(key, start=s, end=min(size, s + GET_PART))))
            part = await window.pop(0)
            if not part:
                return
            yield part
    finally:
        for t in window:
            t.cancel()


async def resumed_chunks(backend: StreamingGet, key: str, size: int) -> AsyncGenerator[bytes, None]:
    """The bytes of `key` from one streamed GET; a stream that breaks off (`Unreachable`) is resumed
    from the byte reached, at most `_RESUMES` times (`size`: where the object ends, so a stream
    broken after its last byte is not asked for again)."""
    reached = breaks = 0
    while True:
        try:
            async with backend.stream(key, start=reached) as chunks:
                async for chunk in chunks:
                    reached += len(chunk)
                    yield chunk
            return
        except Unreachable:
            breaks += 1
            if reached >= size:
                return
            if breaks > _RESUMES:
                raise
            await retry_pause(breaks)


async def _fetch_streamed(backend: StreamingGet, url: str, key: str, digest: str, size: int, out: BinaryIO,
                          progress: Progress) -> str:
    """One GET for the whole object (`resumed_chunks`), its bytes hashed and written as they arrive
    (`_Sink`)."""
    sink = _Sink(out)
    written = held = 0
    buf: list[bytes] = []
    try:
        async with contextlib.aclosing(resumed_chunks(backend, key, size)) as chunks:  # closed at once on an error
            async for chunk in chunks:
                buf.append(chunk)
                held += len(chunk)
                if held >= STREAM_BUFFER:
                    written = await _put(sink, buf, held, written, size, url, key, progress)
                    buf, held = [], 0
        written = await _put(sink, buf, held, written, size, url, key, progress)
        got = await sink.digest()
    finally:
        await sink.settle()
    if written != size or got != digest:
        raise IntegrityError(f"{url}: {key}: {written} bytes hashing to {got}, expected {size} bytes "
                             f"hashing to {digest}")
    return key


async def _put(sink: _Sink, buf: list[bytes], held: int, written: int, size: int, url: str, key: str,
               progress: Progress) -> int:
    if held:
        if written + held > size:
            raise IntegrityError(f"{url}: {key}: longer than the {size} bytes the manifest says")
        await sink.put(buf)
        progress(held)
    return written + held


class _Sink:
    """Hashes and writes chunks on a worker thread, a batch at a time, in order, one batch behind the
    network: the next batch arrives while the last one is written (memory: two batches of about
    `STREAM_BUFFER` per download). Chunks are written as they came, never joined (one copy less)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = xxhash.xxh3_128()
        self._pending: asyncio.Future[None] | None = None

    def _write(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._hash.update(chunk)
            self._out.write(chunk)

    async def put(self, chunks: list[bytes]) -> None:
        await self._wait()
        self._pending = asyncio.ensure_future(asyncio.to_thread(self._write, chunks))

    async def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def digest(self) -> str:
        await self._wait()
        return self._hash.hexdigest()

    async def settle(self) -> None:
        """Let a write still running finish before the file is closed (also when cancelled)."""
        if self._pending is not None:
            await asyncio.wait([self._pending])


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


async def read_verified(backend: Backend, digest: str, size: int | None) -> int:
    """Stream the object under `digest` through the hash without keeping it; return its size.

    Raises:
        ObjectNotFound: no Data object for `digest`.
        IntegrityError: its size or bytes are wrong (the key is named).
    """
    if size is None:
        try:
            size = (await backend.head(data_key(digest))).size
        except ObjectNotFound:
            size = (await backend.head(legacy_data_key(digest))).size
    await _fetch(backend, digest, size, _Discard(), lambda n: None)  # type: ignore[arg-type]
    return size


def reserve_copy_name(target: str | os.PathLike[str]) -> Path:
    """Deadline's CREATE_COPY naming, `name (1).ext`, reserved with O_EXCL across processes."""
    target = Path(target)
    n = 1
    while True:
        candidate = target.with_name(f"{target.stem} ({n}){target.suffix}")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return candidate
        except FileExistsError:
            n += 1


def prepare_parent(target: str | os.PathLike[str], dest_real: str) -> None:
    """Create `target`'s folder, refusing any folder on the way that is a link leading out of dest.

    Raises:
        UnsafePathError: a folder of the path resolves outside the destination.
    """
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    if not within(folder, dest_real):
        raise UnsafePathError(f"{target}: its folder resolves outside the destination {dest_real}")
