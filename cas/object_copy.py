"""One Data object from one backend to another, hashed on the way (`fscas.copying` sends many).

An object up to one part moves as one bounded GET and one PUT. A larger one goes as a `FileBody`
whose every reading is a new GET of the source (one streamed request where the backend has one,
resumed from the byte reached if it breaks): the destination sends it as one request where it can
(a retry reads it again) and never reads it twice only to checksum it. Each reading holds its last
chunk back until the whole object hashed right, so a destination never commits a wrong object.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import xxhash

from fscas import keys
from fscas.backends.base import FileBody, StreamingGet
from fscas.errors import BucketNotFound, ObjectNotFound, StoreError
from fscas.fetching import get_small, ranged_chunks, resumed_chunks
from fscas.transfer import PART, Reach, files_done_of, in_lanes, progress_of

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from fscas.backends import Backend
    from fscas.transfer import Progress

__all__ = ["Side", "copy_objects", "side"]

_BIG = 2  # objects larger than one part copied at once (each holds a few parts in memory)

Side = Literal["source", "destination"]


@contextlib.contextmanager
def side(name: Side) -> Iterator[None]:
    """Store errors raised inside say which store of the two they come from ("source s3://...: ...")."""
    try:
        yield
    except StoreError as e:
        if str(e).startswith(("source ", "destination ")):
            raise
        raise type(e)(f"{name} {e}") from e


async def copy_objects(src: Backend, dst: Backend, objects: Sequence[tuple[str, int]], *, concurrency: int,
                       callback: Callback | None = None) -> tuple[list[str], dict[str, str]]:
    """Copy `Data/<digest>.xxh128` for each (digest, size), verified on the way.

    Returns:
        The digests copied, and for each source object that could not be (missing, or its bytes do
        not match its key), its source key and why. Any other error (a refusal, an unreachable
        server) propagates, naming its side.
    """
    sizes = dict(objects)
    progress = progress_of(callback, sum(sizes.values()))
    file_done = files_done_of(callback, len(sizes))
    done: list[str] = []
    bad: dict[str, str] = {}

    async def one(digest: str) -> None:
        try:
            await _copy_one(src, dst, digest, sizes[digest], progress)
        except _SourceBad as e:
            bad[e.key] = e.why
            return
        done.append(digest)
        file_done()

    order = sorted(sizes, key=lambda d: -sizes[d])
    await in_lanes(one, ([d for d in order if sizes[d] <= PART], concurrency), ([d for d in order if sizes[d] > PART],
                                                                                _BIG))
    return done, bad


class _SourceBad(Exception):
    """A source object that cannot be copied: missing, or not the bytes its key names."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}")
        self.key, self.why = key, why


async def _copy_one(src: Backend, dst: Backend, digest: str, size: int, progress: Progress) -> None:
    key = await _source_key(src, digest) if size > PART else keys.data_key(digest)
    if size > PART:  # a body the destination may read again (a retry, one PUT): each reading a new GET
        reach = Reach(progress)
        body = FileBody(size, lambda counted: _verified_stream(src, key, digest, size, reach if counted else _no),
                        cheap_rereads=False)
        with side("destination"):
            await dst.put(keys.data_key(digest), body)
        return
    with side("source"):
        try:
            key, data = await get_small(src, digest, size)  # bounded by the size; the pre-suffix name as fallback
        except BucketNotFound:
            raise
        except ObjectNotFound:
            raise _SourceBad(keys.data_key(digest), "missing from the source") from None
    if len(data) != size or (got := xxhash.xxh3_128_hexdigest(data)) != digest:
        raise _SourceBad(key, f"{len(data)} bytes hashing to {got}, the manifest says {size} bytes hashing to {digest}")
    with side("destination"):
        await dst.put(keys.data_key(digest), data)
    progress(size)


async def _source_key(src: Backend, digest: str) -> str:
    """The source's key for `digest`: the current name, else Deadline's pre-suffix one."""
    with side("source"):
        for key in (keys.data_key(digest), keys.legacy_data_key(digest)):
            try:
                await src.head(key)
                return key
            except BucketNotFound:
                raise
            except ObjectNotFound:
                continue
    raise _SourceBad(keys.data_key(digest), "missing from the source")


def _no(offset: int) -> None:
    pass


async def _verified_stream(src: Backend, key: str, digest: str, size: int, reach: Callable[[int], None]
                           ) -> AsyncIterator[bytes]:
    """The source object's bytes for a streamed PUT, hashed as they pass; the last chunk is handed on
    only once the whole object hashed to `digest`, so a wrong object is never committed (the
    destination aborts the upload when this raises). `reach(offset)` after each chunk handed on."""
    h = xxhash.xxh3_128()
    held: bytes | None = None
    got = 0
    async for chunk in _source_chunks(src, key, size):
        got += len(chunk)
        if got > size:
            raise _SourceBad(key, f"longer than the {size} bytes the manifest says")
        h.update(chunk)
        if held is not None:
            yield held
            reach(got - len(chunk))
        held = chunk
    if got != size or h.hexdigest() != digest:
        raise _SourceBad(key, f"{got} bytes hashing to {h.hexdigest()}, the manifest says {size} bytes hashing "
                              f"to {digest}")
    if held is not None:
        yield held
        reach(got)


async def _source_chunks(src: Backend, key: str, size: int) -> AsyncIterator[bytes]:
    """One streamed GET where the backend has it (resumed from the byte reached if it breaks), else
    ranged GETs (`fetching.ranged_chunks`)."""
    if isinstance(src, StreamingGet):
        with side("source"):
            async with contextlib.aclosing(resumed_chunks(src, key, size)) as chunks:
                async for chunk in chunks:
                    yield chunk
        return
    with side("source"):
        async with contextlib.aclosing(ranged_chunks(src, key, size)) as parts:
            async for part in parts:
                yield part
