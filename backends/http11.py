"""A lean HTTP/1.1 client for one host: keep-alive connections, llhttp's C parser, streamed bodies.

Why not aiohttp: its `ClientSession` spends about 0.25 ms of CPU on every request (tracing hooks,
cookie jar, redirect handling, a timer rescheduled on every chunk read), which for thousands of
small objects was half of a download's client CPU (tests/bench/RESULTS.md). Here a request is one
bytes write and its answer is parsed by httptools (llhttp, the parser of Node.js and uvicorn):
about 0.1 ms a request. Only what an object store needs: one request at a time per connection,
no redirects, no cookies, no proxies; `Content-Length` and chunked answers; HEAD and 204/304
without a body; request bodies whole or streamed with a declared length (`Streamed`). Used by the
S3 fast path (`s3_http`) for object GET, HEAD, PUT, DELETE and listing.

Errors: `CannotConnect` (refused, unknown host), `ConnectionError` (reset, closed mid-answer, a
malformed answer) and `TimeoutError` (no connection within `connect_timeout`, no byte sent or
received for `read_timeout`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from fscas.backends.base import check_send_by

__all__ = ["Answer", "CannotConnect", "HttpClient", "Streamed"]

_HIGH, _LOW = 1 << 20, 256 << 10  # a streamed body pauses the socket above _HIGH buffered, resumes below _LOW
_NO_BODY = {204, 304}


class CannotConnect(ConnectionError):
    """No connection could be opened: refused, unknown host, unreachable network (not transient)."""


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


class Answer:
    """Status and headers (names lowercased) of an answer whose head has arrived."""

    __slots__ = ("headers", "status")

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers


class _Connection(asyncio.Protocol):
    """One keep-alive connection; a new parser per exchange (a HEAD answer declares a length it never sends)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self._parser: Any = None
        self._head_only = False
        self._headers: dict[str, str] = {}
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
        self._drained: asyncio.Future[None] | None = None  # set while the transport's write buffer is full

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._got_any = True
        self._seen += 1
        if self._parser is None:  # nothing asked: a server talking out of turn
            self._abort(ConnectionError("unexpected data on an idle connection"))
            return
        import httptools

        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._abort(ConnectionError(f"malformed HTTP answer ({e})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
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
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the real one follows
            self._interim = True
            self._headers = {}
            return
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(Answer(status, self._headers))
        if self._head_only or status in _NO_BODY:
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self._done is None or self._done.done():
            return
        self._body.append(body)
        self._buffered += len(body)
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
    def send(self, head: bytes, body: bytes, *, head_only: bool, streaming: bool, read_timeout: float) -> None:
        import httptools

        assert self.transport is not None
        self._quiet = read_timeout
        self._seen, self._sending = 0, self.transport.get_write_buffer_size()
        self._watchdog = self.loop.call_later(read_timeout, self._watch)
        self._parser = httptools.HttpResponseParser(self)
        self._head_only, self._streaming, self._paused, self._got_any = head_only, streaming, False, False
        self._interim = False
        self._headers = {}
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
        """Give up an exchange that neither received nor sent a byte for `read_timeout` seconds."""
        assert self.transport is not None
        pending = self.transport.get_write_buffer_size()
        if self._seen or pending != self._sending or self._paused:  # progress, or waiting on our reader
            self._seen, self._sending = 0, pending
            self._watchdog = self.loop.call_later(self._quiet, self._watch)
        else:
            self._abort(TimeoutError(f"no data for {self._quiet:.0f} s"))

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


class HttpClient:
    """Requests to one `scheme://host:port`, at most `connections` at once, connections kept alive.

    Args:
        scheme: `http` or `https`.
        host, port: the server.
        connections: requests in flight at once (and connections kept).
        connect_timeout: seconds to open a connection (TLS handshake included).
        read_timeout: seconds of silence after which an answer is given up.
        ssl_context: for https; the system's default trust store if not given.
    """

    def __init__(self, scheme: str, host: str, port: int, *, connections: int = 64, connect_timeout: float = 30,
                 read_timeout: float = 120, ssl_context: ssl.SSLContext | None = None) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self._tls = (ssl_context or ssl.create_default_context()) if scheme == "https" else None
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(connections)
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._closed = False

    async def request(self, method: str, target: str, headers: Iterable[tuple[str, str]], body: Body = b""
                      ) -> tuple[Answer, bytes]:
        """Send one request (`target` already percent-encoded) and read the whole answer."""
        async with self._exchange(method, target, headers, body, streaming=False) as conn:
            answer = await conn.answer()
            return answer, await conn.body()

    @contextlib.asynccontextmanager
    async def stream(self, method: str, target: str, headers: Iterable[tuple[str, str]]
                     ) -> AsyncIterator[tuple[Answer, AsyncIterator[bytes]]]:
        """Send one request and hand out its answer's head and body chunks as they arrive."""
        async with self._exchange(method, target, headers, b"", streaming=True) as conn:
            yield await conn.answer(), conn.chunks()

    async def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    @contextlib.asynccontextmanager
    async def _exchange(self, method: str, target: str, headers: Iterable[tuple[str, str]], body: Body, *,
                        streaming: bool) -> AsyncIterator[_Connection]:
        length = body.length if isinstance(body, Streamed) else len(body)
        head = _head(method, target, headers, length)
        await self._slots.acquire()
        try:
            for _ in range(2):  # a kept connection the server closed while idle: once more, on a new one
                conn, reused = await self._connection()
                check_send_by(f"{self.scheme}://{self.host}:{self.port}", target)  # no await from here to the write
                conn.send(head, body if isinstance(body, bytes) else b"", head_only=method == "HEAD",
                          streaming=streaming, read_timeout=self.read_timeout)
                try:
                    if isinstance(body, Streamed):
                        await conn.send_body(body.chunks(), length)
                    await conn.answer()
                except ConnectionError:
                    conn.close()
                    if reused and not conn.got_any:
                        continue
                    raise
                except BaseException:
                    conn.close()
                    raise
                break
            try:
                yield conn
            except BaseException:
                conn.close()  # an answer not read to its end cannot carry the next request
                raise
            if conn.reusable and not conn.closed and not self._closed:
                self._idle.append(conn)
            else:
                conn.close()
        finally:
            self._slots.release()

    async def _connection(self) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: _Connection(loop), self.host, self.port, ssl=self._tls,
                server_hostname=self.host if self._tls else None), self.connect_timeout)
        except TimeoutError:
            raise TimeoutError(f"no connection to {self.host}:{self.port} in {self.connect_timeout:.0f} s") from None
        except OSError as e:  # refused, unknown host (socket.gaierror), no route
            raise CannotConnect(f"cannot connect to {self.host}:{self.port} ({e.strerror or e})") from e
        return conn, False


def _head(method: str, target: str, headers: Iterable[tuple[str, str]], length: int) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r}: a line break in a header would split the request")
        lines.append(f"{name}: {value}\r\n")
    if length or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {length}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")
