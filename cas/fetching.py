"""Downloading: bytes hashed as they arrive, written to a temp file beside the target, checked for
size and digest, given the manifest mtime and renamed into place; a broken stream resumed from the
last byte written. The upload side, lanes and progress are `transfer`'s."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import BinaryIO

import xxhash

from fscas.backends import Backend
from fscas.backends.base import StreamingGet, retry_pause
from fscas.errors import IntegrityError, ObjectNotFound, Unreachable, UnsafePathError
from fscas.files import create_temp
from fscas.keys import data_key, legacy_data_key
from fscas.paths import within
from fscas.transfer import GET_PART, INLINE, PART, STREAM_BUFFER, Progress

__all__ = [
    "Place",
    "fetch_to_file",
    "get_small",
    "get_verified",
    "prepare_parent",
    "ranged_chunks",
    "read_verified",
    "reserve_copy_name",
    "resumed_chunks",
]

_RESUMES = 5
"""How often a broken download stream is resumed from where it stopped before the error counts."""

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
