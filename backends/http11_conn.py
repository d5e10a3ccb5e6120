"""One HTTP/1.1 connection of `http11.HttpClient`: the asyncio protocol, llhttp's callbacks, and the
timers and limits every exchange on it answers to."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fscas.backends.http11_types import Answer, AnswerRefused, Limits

__all__ = ["Connection"]

_HIGH, _LOW = 1 << 20, 256 << 10  # a streamed body pauses the socket above _HIGH buffered, resumes below _LOW
_NO_BODY = {204, 304}


class _Stop(Exception):
    """Raised inside a parser callback to stop parsing: the reason is in `Connection._violation`."""


_PIECE = 2**20
"""A streamed body goes to the transport in pieces of at most this size, each after the last drained:
Python 3.11's transport copies whatever the socket did not take at once into its own buffer, which
for 8 MiB chunks was 8 % of an upload's CPU (perf: memmove)."""


def _pieces(chunk: bytes) -> Iterator[bytes | memoryview]:
    if len(chunk) <= _PIECE:
        yield chunk
        return
    view = memoryview(chunk)
    for i in range(0, len(chunk), _PIECE):
        yield view[i:i + _PIECE]


class Connection(asyncio.Protocol):
    """One keep-alive connection; a new parser per exchange (a HEAD answer declares a length it never sends)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: Limits) -> None:
        self.loop = loop
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self._parser: Any = None
        self._head_only = False
        self._headers: dict[str, str] = {}
        self._repeated: dict[str, list[str]] = {}  # values of a header sent more than once, joined once
        self._head_bytes = 0
        self._head_lines = 0
        self._limit = 0  # body bytes this exchange may take
        self._body_bytes = 0
        self._truncate = False  # an error body: kept up to its cap, then the exchange ends
        self._until_close = False  # a body that the connection's end delimits
        self._violation: BaseException | None = None
        self._answer: asyncio.Future[Answer] | None = None
        self._done: asyncio.Future[None] | None = None
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._wake: asyncio.Future[None] | None = None
        self._streaming = False
        self._paused = False
        self._got_any = False
        self._interim = False
        self._seen = 0  # reads since the watchdog last looked
        self._sending = 0  # the write buffer's size when it last looked
        self._watchdog: asyncio.TimerHandle | None = None
        self._quiet = 0.0
        self._tick = 1.0
        self._moved = 0  # bytes received and written this exchange
        self._active = 0.0  # seconds of this exchange not spent waiting on our own reader
        self._silent = 0.0  # seconds since a byte moved
        self._last = 0.0
        self._drained: asyncio.Future[None] | None = None  # set while the transport's write buffer is full

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._got_any = True
        self._seen += 1
        self._moved += len(data)
        if self._parser is None:  # nothing asked: a server talking out of turn
            self._abort(ConnectionError("unexpected data on an idle connection"))
            return
        import httptools

        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            if self._violation is not None:  # a limit, raised from a callback
                self._abort(self._violation)
            elif self._done is not None and self._done.done():  # an error body cut at its cap: it stands
                self._abort(ConnectionError("answer cut short"))
            else:
                self._abort(ConnectionError(f"malformed HTTP answer ({e})"))
            return
        if self._parser is not None and self._answer is not None and not self._answer.done():  # still in the head
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.head_bytes:
                self._abort(AnswerRefused(f"answer head larger than {self.limits.head_bytes} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._until_close and exc is None and self._parser is not None:
            self._finish()  # the end of the connection is the end of this body
            self.reusable = False
            return
        self._fail(ConnectionError("connection closed by the server" + (f" ({exc})" if exc else "")))

    def pause_writing(self) -> None:
        self._drained = self.loop.create_future()

    def resume_writing(self) -> None:
        self._release_writer()

    def _release_writer(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # -- httptools callbacks
    def _refuse(self, error: BaseException) -> None:
        self._violation = error
        raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_lines += 1
        if self._head_lines > self.limits.head_lines:
            self._refuse(AnswerRefused(f"answer with more than {self.limits.head_lines} header lines"))
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in self._headers:  # joined once the head is complete: linear in the header count
            self._repeated.setdefault(key, [self._headers[key]]).append(text)
        else:
            self._headers[key] = text

    def on_headers_complete(self) -> None:
        for key, values in self._repeated.items():
            self._headers[key] = ", ".join(values)
        self._repeated = {}
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the real one follows
            self._interim = True
            self._headers = {}
            self._head_lines = 0
            return
        headers = self._headers
        no_body = self._head_only or status in _NO_BODY
        if status >= 300:
            self._limit, self._truncate = min(self._limit, self.limits.error_body_bytes), True
        if not no_body and "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", ""):
            self._until_close = True  # RFC 9112 6.3: read until the server closes
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(Answer(status, headers))
        if no_body:
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self._done is None or self._done.done():
            return
        self._body_bytes += len(body)
        over = self._body_bytes - self._limit
        if over > 0 and not self._truncate:
            self._refuse(AnswerRefused(f"answer body longer than the {self._limit} bytes expected"))
        if over > 0:
            body = body[:len(body) - over]
        self._body.append(body)
        self._buffered += len(body)
        if over > 0:
            self._finish()  # what an error says is in its first bytes; the rest is never read
            self.reusable = False
            raise _Stop
        if self._streaming and self._buffered > _HIGH and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wakeup()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._finish()

    # -- exchanges
    def send(self, head: bytes, body: bytes, *, head_only: bool, streaming: bool, read_timeout: float,
             limit: int) -> None:
        import httptools

        assert self.transport is not None
        self._quiet, self._tick = read_timeout, min(read_timeout, 1.0)
        self._seen, self._sending = 0, self.transport.get_write_buffer_size()
        self._moved, self._active, self._silent = 0, 0.0, 0.0
        self._last = self.loop.time()
        self._watchdog = self.loop.call_later(self._tick, self._watch)
        self._parser = httptools.HttpResponseParser(self)
        self._head_only, self._streaming, self._paused, self._got_any = head_only, streaming, False, False
        self._interim = False
        self._headers, self._repeated = {}, {}
        self._head_bytes = self._head_lines = self._body_bytes = 0
        self._truncate = self._until_close = False
        self._violation = None
        self._limit = limit
        self._body.clear()
        self._buffered = 0
        self.reusable = False
        self._answer, self._done = self.loop.create_future(), self.loop.create_future()
        self.transport.write(head)
        if body:
            self.transport.write(body)

    async def send_body(self, chunks: AsyncIterator[bytes], length: int) -> None:
        """Write a streamed body after `send`'s head, as fast as the socket takes it. Stops early when
        the answer has already come (an error the server sent before reading it all: the connection is
        then not reused); aborts the connection if `chunks` raises or does not yield `length` bytes."""
        assert self.transport is not None and self._answer is not None
        sent = 0
        try:
            async for chunk in chunks:
                if self.closed or self._answer.done():
                    break
                sent += len(chunk)
                if sent > length:
                    raise ValueError(f"a streamed body longer than the {length} bytes declared")
                for piece in _pieces(chunk):
                    self.transport.write(piece)
                    self._moved += len(piece)
                    if self._drained is not None:
                        await self._drained
            else:
                if sent != length:
                    raise ValueError(f"a streamed body of {sent} bytes, {length} declared")
        except BaseException as e:
            self._abort(e if isinstance(e, ConnectionError) else ConnectionError("request body not sent whole"))
            raise
        finally:
            if (close := getattr(chunks, "aclose", None)) is not None:
                await close()  # a generator stopped early runs its cleanup now, not at garbage collection
        if sent != length:
            self.reusable, self.closed = False, True  # the rest of the body was never sent

    def _watch(self) -> None:
        """Give up an exchange that neither received nor sent a byte for `read_timeout` seconds, or
        that, once it has run that long, averages less than `Limits.min_rate` (time spent waiting
        on our own reader, with the socket paused, counts for neither)."""
        assert self.transport is not None
        now = self.loop.time()
        elapsed, self._last = now - self._last, now
        pending = self.transport.get_write_buffer_size()
        if self._paused:
            self._silent = 0.0
        else:
            self._active += elapsed
            moved = self._seen or pending != self._sending
            self._silent = 0.0 if moved else self._silent + elapsed
            if self._silent >= self._quiet:
                self._abort(TimeoutError(f"no data for {self._quiet:g} s"))
                return
            sent = self._moved - pending
            floor = self.limits.min_rate * (self._active - self._quiet)
            if floor > 0 and sent < floor:
                self._abort(TimeoutError(f"answer slower than {self.limits.min_rate / 1024:g} KiB/s "
                                         f"({sent} bytes in {self._active:.1f} s)"))
                return
        self._seen, self._sending = 0, pending
        self._watchdog = self.loop.call_later(self._tick, self._watch)

    def stop_watching(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    async def answer(self) -> Answer:
        assert self._answer is not None
        return await self._answer

    async def body(self) -> bytes:
        assert self._done is not None
        await self._done
        data = b"".join(self._body)
        self._body.clear()
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; the socket is paused while too much is buffered."""
        assert self._done is not None
        while True:
            while self._body:
                chunk = self._body.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered < _LOW and self.transport is not None:
                    self.transport.resume_reading()
                    self._paused = False
                yield chunk
            if self._done.done():
                self._done.result()  # raises if the connection broke
                return
            self._wake = self.loop.create_future()
            await self._wake  # the watchdog fails the exchange (and so wakes this) after read_timeout of silence

    @property
    def got_any(self) -> bool:
        """Whether any byte of the current answer arrived (a reused connection that gets none was stale)."""
        return self._got_any

    def close(self) -> None:
        self.closed = True
        self.stop_watching()
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> None:
        if self._done is not None and not self._done.done():
            self.reusable = bool(self._parser.should_keep_alive()) and not self.closed
            self._done.set_result(None)
        self.stop_watching()
        self._parser = None
        self._wakeup()

    def _wakeup(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
            self._wake = None

    def _fail(self, error: BaseException) -> None:
        self.stop_watching()
        for fut in (self._answer, self._done):
            if fut is not None and not fut.done():
                fut.set_exception(error)
                fut.exception()  # retrieved: a waiter may be gone
        self._parser = None
        self.reusable = False
        self._wakeup()
        self._release_writer()

    def _abort(self, error: BaseException) -> None:
        self._fail(error)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
