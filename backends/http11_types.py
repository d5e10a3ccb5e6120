"""What `http11`'s exchanges cost and carry: their limits, errors, request bodies and answers."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

__all__ = ["LIMITS", "Answer", "AnswerRefused", "Body", "CannotConnect", "Limits", "Streamed"]


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one exchange may cost, in one place. Each limit crossed ends the exchange at once with
    `AnswerRefused` (sizes) or `TimeoutError` (rate), naming the limit."""

    head_bytes: int = 64 << 10
    """An answer's status line and headers (S3 allows 2 KiB of user metadata; Azure 8 KiB)."""
    head_lines: int = 256
    """Header lines of one answer."""
    body_bytes: int = 64 << 20
    """A whole body read into memory, when the caller promises no size (`request(limit=...)`)."""
    error_body_bytes: int = 64 << 10
    """Kept of an error answer's body (status 300 and up): enough for its code and message; the rest
    is not read and the connection is dropped."""
    min_rate: float = 16 << 10
    """Bytes a second, sent and received together, that an exchange must average once it has run for
    `read_timeout` (time the caller spends not reading does not count): a slow drip of bytes, which
    the silence timer alone never ends, is given up."""


LIMITS = Limits()


class CannotConnect(ConnectionError):
    """No connection could be opened: refused, unknown host, unreachable network (not transient)."""


class AnswerRefused(Exception):
    """An answer broke one of `Limits` (or promised nothing an exchange could end on): the server is
    not answering as an object store does, and asking again would cost the same."""


class Streamed:
    """A request body of `length` bytes sent as `chunks()` yields them (called again for each attempt).

    If `chunks()` raises, the connection is aborted before the body is complete, so the server never
    takes a truncated or unverified body as whole: the upload store's rule of holding a file's last
    chunk back until its hash checks out relies on this.
    """

    __slots__ = ("chunks", "length")

    def __init__(self, length: int, chunks: Callable[[], AsyncIterator[bytes]]) -> None:
        self.length, self.chunks = length, chunks


Body = bytes | Streamed


class Answer:
    """Status and headers (names lowercased) of an answer whose head has arrived."""

    __slots__ = ("headers", "replayed", "status")

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers
        self.replayed = False
        """Whether the request was sent twice: a kept connection died with no answer, so the first
        copy may have reached the server (a conditional write's 412 may then be our own write)."""
