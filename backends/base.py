"""The backend contract: what a content-addressed store needs from a bucket, and nothing more."""

from __future__ import annotations

import asyncio
import contextvars
import random
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from fscas.errors import ConfigError, DeadlinePassed, StoreError, UnsafePathError

__all__ = ["SEND_BY", "Backend", "Body", "Capabilities", "FileBody", "ObjectInfo", "Pages", "Raw", "RawAccess",
           "StreamingGet", "Swappable", "at", "check_key", "check_metadata", "check_send_by", "chunks_of", "read_part",
           "retry_pause", "stop_all", "swap_is_honoured", "together"]

SEND_BY: contextvars.ContextVar[float | None] = contextvars.ContextVar("fscas_send_by", default=None)
"""A time on the running loop's clock (`loop.time()`) after which a request must not go out at all.

A gc deletes only within a window after it saw its hold on the store epoch (`fscas.epoch`); it sets
this for each delete, and a backend checks it as late as it can before the request leaves: our own
HTTP transport right before the first byte is written, after any wait for a connection; a folder
store right before the unlink; an SDK's path when the call starts. A request past it raises
`DeadlinePassed` instead of being sent (a process stopped on its way out must not delete late)."""


def check_send_by(url: str, key: str, now: float | None = None) -> None:
    """Raise `DeadlinePassed` if `SEND_BY` is set and past (`now`: the loop's time, given from a thread)."""
    deadline = SEND_BY.get()
    if deadline is not None and (now if now is not None else asyncio.get_running_loop().time()) >= deadline:
        raise DeadlinePassed(f"{at(url, key)}: not sent: past the deadline its caller set")

Body = bytes | AsyncIterable[bytes]
"""What `Backend.put` takes: the whole object, or its bytes in order (a `FileBody` among them).

A streamed object becomes visible only if the iterable ends without raising; a backend that
sees the iterable raise aborts the upload (multipart abort, uncommitted blocks, unlinked temp
file). The store relies on this to hash while reading and refuse a file that changed.
"""


class FileBody:
    """A streamed `Body` of known `size` that can be read again from its start: a local file.

    Iterating it reads it once, like any streamed body. A backend that must know a checksum of the
    whole object before it sends the first byte (S3's signed payload) may instead read it twice,
    `reread(counted=False)` to checksum it, then `reread()` to send it as one request rather than
    as a multipart upload. Every reading checks the bytes against the file's manifest entry and
    raises before yielding the last chunk if they do not match.
    """

    __slots__ = ("_open", "cheap_rereads", "size")

    def __init__(self, size: int, open_chunks: Callable[[bool], AsyncIterator[bytes]], *,
                 cheap_rereads: bool = True) -> None:
        """`open_chunks(counted)`: the bytes from the start; `counted` False for a pass that only
        checksums them (it does not move the transfer's progress). `cheap_rereads` False: each
        reading costs a request somewhere (an object copied from another store), so a backend should
        not read it a second time only to checksum it: it streams it once instead (multipart)."""
        self.size, self._open, self.cheap_rereads = size, open_chunks, cheap_rereads

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._open(True)

    def reread(self, *, counted: bool = True) -> AsyncIterator[bytes]:
        """The bytes again from the start."""
        return self._open(counted)


def _str_dict(m: Mapping[str, str]) -> dict[str, str]:
    return dict(m)


@attrs.frozen(kw_only=True)
class Capabilities:
    """What a backend's server honours; the store branches on these, never on the scheme."""

    create_only: bool
    """`put(..., if_absent=True)` is a server-side precondition (the loser gets ObjectExists). Without
    it the store writes manifests after a HEAD (a race can overwrite) and the conformance suite
    reports the create-only checks `n/s`."""
    metadata_names: Literal["any", "identifier"] = "any"
    """`identifier`: the wire only takes C# identifiers (Azure); the backend maps names (`asset-root`
    to `asset_root`) both ways, so callers always see Deadline's names."""
    integrity: frozenset[str] = frozenset()
    """Checksums `head` returns from the server, e.g. `md5`, `crc32c`, `sha256`: `verify` and the
    conformance suite compare them with the bytes; an empty set means the bytes must be read back."""
    root: Literal["bucket", "folder"] = "bucket"
    """`bucket`: the root must exist (a missing bucket is an error, `BucketNotFound`); `folder`: the
    first write makes it."""


@attrs.frozen(kw_only=True)
class ObjectInfo:
    """What the server says about one object. Keys are relative to the backend's root."""

    key: str
    size: int
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_str_dict, eq=False)
    etag: str | None = None
    version_id: str | None = None
    checksums: Mapping[str, str] = attrs.field(factory=dict, converter=_str_dict, eq=False)
    """Lowercase hex digests by algorithm (`md5`, `crc32c`, `crc32`, `sha256`)."""
    last_modified: float | None = None
    """Seconds since the epoch, when the server says."""


@runtime_checkable
class Backend(Protocol):
    """A bucket (plus prefix) seen as keys and bytes. Knows nothing of hashes or manifests.

    Every method raises the most specific `fscas.errors.StoreError`: `ObjectNotFound` only when
    the server said the key is absent, never for a timeout or a refusal.
    """

    url: str
    """Credential-free URL of the root, safe to print."""
    capabilities: Capabilities

    async def head(self, key: str) -> ObjectInfo:
        """What the server holds under `key` (size, user metadata, ETag, checksums). Idempotent.

        Raises:
            ObjectNotFound: the server said `key` is absent (`BucketNotFound`: the root is).
            AccessDenied: refused (`CredentialsRefused`: the credentials themselves).
            Unreachable: no answer (refused connection, timeout, a broken stream).
        """
        ...

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        """The bytes of `key` from `start` up to `end` (exclusive; None: the end), never more than
        asked: a server sending more is an error, not a longer answer. Idempotent. Errors as `head`."""
        ...

    async def put(self, key: str, data: Body, *, metadata: Mapping[str, str] | None = None,
                  if_absent: bool = False) -> ObjectInfo:
        """Write `data` (bytes, a `FileBody` or chunks) under `key` whole or not at all, with user
        `metadata` (Deadline's names; mapped for the wire where `Capabilities.metadata_names` says).

        Idempotent for content-addressed keys (the same bytes again); `if_absent` makes it a
        create-only write where `Capabilities.create_only`, else it is ignored.

        Raises:
            ObjectExists: `if_absent` and the key exists (a lost answer to our own write is resolved
                by the backend, never reported as this).
            AccessDenied, Unreachable, BucketNotFound: as `head`.
            UnsafePathError: a key that would leave the root.
        """
        ...

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order, each once. A listing the
        server pages in a loop is refused with `StoreError` (`Pages`). Errors as `head`, raised while
        iterating."""
        ...

    async def delete(self, key: str) -> None:
        """Remove `key`; removing an absent key is not an error (S3 semantics, on every backend).
        Idempotent. Checks `SEND_BY` as the request leaves (`check_send_by`): a delete past a gc's
        deadline raises `DeadlinePassed` and is not sent. Errors as `head`."""
        ...

    async def aclose(self) -> None:
        """Close sessions and connections; the backend is not used afterwards. Never raises for a
        backend that was never used."""
        ...


@runtime_checkable
class StreamingGet(Protocol):
    """Optional: one object's bytes from `start` to its end in one request, read as they arrive.

    The store downloads large objects through it when a backend has it (one GET instead of a ranged
    GET per few MiB: less work for the server, no part held whole in memory), and resumes from the
    offset reached if the stream breaks. Errors are `get`'s, raised on entry or while iterating.
    """

    def stream(self, key: str, *, start: int = 0) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...


@runtime_checkable
class Swappable(Protocol):
    """Optional: compare-and-swap of one small object, which the store epoch needs (`fscas.epoch`).

    `get_tagged` returns an object's bytes with the server's tag of that very version (an ETag, a
    generation); `put_tagged` writes `data` only while the object still has `tag` (None: only while
    it is absent), decided by the server in one conditional request, and returns the new tag.

    `put_tagged` raises `ObjectExists` when the condition failed (the object changed, appeared or
    vanished since `tag` was read), and `NotSupported` when this server is known to ignore the
    condition (a backend probes that once, see `swap_is_honoured`): the caller then falls back to
    read-compare-write and says what that guarantees. `get_tagged` raises `ObjectNotFound`.
    """

    async def get_tagged(self, key: str) -> tuple[bytes, str]: ...

    async def put_tagged(self, key: str, data: bytes, *, tag: str | None) -> str: ...


class Raw(Protocol):
    """Reads and writes of a backend's objects that bypass the backend's own code (see `RawAccess`)."""

    def read(self, key: str) -> bytes:
        """The bytes stored under `key` (relative to the backend's root); FileNotFoundError if absent."""
        ...

    def write(self, key: str, data: bytes) -> None:
        """Store `data` under `key` as the server would hold it (to plant legacy or corrupt objects)."""
        ...

    def metadata(self, key: str) -> dict[str, str]:
        """The user metadata of `key` under the names the server stores (no mapping undone)."""
        ...


@runtime_checkable
class RawAccess(Protocol):
    """Optional: the conformance suite's ground truth for a backend it does not know.

    The suite checks what is really stored (the key layout, metadata names) through reads that do
    not go through the backend under test, or a backend that is consistently wrong would pass. It
    knows how to do that for fscas's own backends; any other backend offers it with `raw()`, from
    the server's own SDK or the storage itself. Without it, the checks that need it are reported
    "not supported", with that reason.
    """

    def raw(self) -> Raw: ...


async def swap_is_honoured(put: Callable[[str, bytes, str | None], Awaitable[str]],
                           delete: Callable[[str], Awaitable[None]], key: str) -> bool:
    """Probe whether a server honours conditional writes, with the backend's own conditional `put`
    (`put(key, data, tag)`, raising ObjectExists when the condition fails) on a scratch `key`.

    Writes `key` twice with the right tags, then once with the first, stale tag: a server that takes
    that third write ignores the condition (seen on fake-gcs-server's media uploads, and said of
    older SeaweedFS). The key is deleted afterwards. Four requests, once per backend.
    """
    from fscas.errors import ObjectExists

    try:
        first = await put(key, b"1", None)
        await put(key, b"2", first)
        try:
            await put(key, b"3", first)
        except ObjectExists:
            return True
        return False
    finally:
        await delete(key)


# S3 lowercases names, Azure takes only identifiers: one lowercase grammar that every backend can
# carry (Azure maps '-' to '_', a bijection on this grammar).
_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")
_VALUE = re.compile(r"[\x20-\x7e]*\Z")


def check_metadata(metadata: Mapping[str, str] | None, key: str) -> dict[str, str]:
    """Validate logical metadata for `key`: lowercase `[a-z][a-z0-9-]*` names, printable ASCII values.

    Non-ASCII values do not survive HTTP headers on S3 or Azure; callers encode them first, as
    Deadline's `asset-root-json` does.

    Raises:
        ConfigError: a name or value is outside the grammar; the message names it and the key.
    """
    out: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        if not _NAME.match(name):
            raise ConfigError(f"{key}: metadata name {name!r} must match [a-z][a-z0-9-]*")
        if not isinstance(value, str) or not _VALUE.match(value):
            raise ConfigError(f"{key}: metadata {name!r} must be printable ASCII, got {value!r}")
        out[name] = value
    return out


def check_key(key: str) -> str:
    """Refuse a key that could not name one object below a root on every backend.

    Raises:
        UnsafePathError: empty, absolute, `.`/`..` or empty segments, backslash, NUL or a control
            character; the message names the key.
    """
    segments = key.split("/")
    if (not key or any(s in ("", ".", "..") for s in segments) or "\\" in key
            or any(ord(c) < 0x20 for c in key)):
        raise UnsafePathError(f"{key!r}: not a safe object key (empty, absolute, '..', '\\\\' or control)")
    return key


async def read_part(chunks: AsyncIterator[bytes], size: int) -> bytes:
    """Read from `chunks` until `size` bytes or the end; b'' means the stream is over."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        parts.append(chunk)
        got += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)  # one copy at most


async def chunks_of(data: Body) -> AsyncIterator[bytes]:
    """A `Body` as an async iterator of chunks, so that one code path serves bytes and streams."""
    if isinstance(data, bytes):
        yield data
    else:
        async for chunk in data:
            yield chunk


def at(url: str, key: str) -> str:
    """`url: key` for an error message, or the URL alone when the error is not about one key."""
    return f"{url}: {key}" if key else url


async def together(*steps: Awaitable[object]) -> None:
    """Run `steps` at once. On the first failure (or a cancel) the others are cancelled and waited
    for, so that their own clean-up runs, before the error is raised: none finishes after its caller
    has given up (an object whose sidecar failed must not land a moment after `put` raised)."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        await stop_all(tasks)
        raise


async def stop_all(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel `tasks` and wait until each has ended, its own clean-up run (their errors are dropped)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def retry_pause(attempt: int) -> None:
    """Wait before retry `attempt + 1` of a request: exponential from 0.1 s, capped at 2 s, jittered ±50 %."""
    await asyncio.sleep(min(2.0, 0.1 * 2**attempt) * (0.5 + random.random()))


class Pages:
    """Guards a paged listing of `prefix` against a server that would never end it.

    Object stores list in key order (S3, GCS and Azure all promise it), so each page starts after
    the last key of the page before; a continuation token comes once; a run of empty pages is short.
    A listing that breaks any of these is refused with one `StoreError` rather than paged forever
    (a server repeating its token once made `ls` and `gc` read 2,870 pages and 1 GiB in 16 s).
    """

    EMPTY_IN_A_ROW = 100

    def __init__(self, url: str, prefix: str) -> None:
        self._where = at(url, prefix)
        self._tokens: set[str] = set()
        self._last: str | None = None
        self._empty = 0

    def check(self, token: str | None, first: str | None, last: str | None) -> None:
        """One page: its continuation token (None: the last page) and its first and last keys (None: empty).

        Raises:
            StoreError: the listing goes back, repeats a token or runs empty too long.
        """
        if first is not None and last is not None:
            if self._last is not None and first <= self._last:
                raise StoreError(f"{self._where}: listing refused: a page starts at {first!r}, not after "
                                 f"{self._last!r} where the page before ended (the server pages in a loop)")
            self._last, self._empty = last, 0
        elif token is not None:
            self._empty += 1
            if self._empty > self.EMPTY_IN_A_ROW:
                raise StoreError(f"{self._where}: listing refused: more than {self.EMPTY_IN_A_ROW} empty pages "
                                 "in a row")
        if token is not None:
            if token in self._tokens:
                raise StoreError(f"{self._where}: listing refused: the server repeated a continuation token "
                                 "(it would page forever)")
            self._tokens.add(token)
