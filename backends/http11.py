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
malformed answer), `TimeoutError` (no connection within `connect_timeout`, no byte sent or received
for `read_timeout`, an exchange slower than `Limits.min_rate`) and `AnswerRefused` (an answer past
one of `Limits`: not worth trying again).

A hostile or broken server cannot make an exchange unbounded: its head is capped in bytes and
lines, a whole body at what the caller promised (`limit`) or `Limits.body_bytes`, an error body at
`Limits.error_body_bytes`, and its time by a silence timer plus a floor on the average rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fscas.backends.base import check_send_by
from fscas.backends.http11_conn import Connection
from fscas.backends.http11_types import LIMITS, Answer, AnswerRefused, Body, CannotConnect, Limits, Streamed

__all__ = ["IDEMPOTENT", "LIMITS", "Answer", "AnswerRefused", "Body", "CannotConnect", "HttpClient", "Limits",
           "Streamed"]
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""Methods resent on a fresh connection when a kept one dies unanswered (RFC 9110 9.2.2). A caller
sending a conditional PUT says `idempotent=False`, or resolves a replayed answer itself
(`Answer.replayed`)."""


class HttpClient:
    """Requests to one `scheme://host:port`, at most `connections` at once, connections kept alive.

    Args:
        scheme: `http` or `https`.
        host, port: the server.
        connections: requests in flight at once (and connections kept).
        connect_timeout: seconds to open a connection (TLS handshake included).
        read_timeout: seconds of silence after which an answer is given up (and the time an exchange
            may take before its average rate is held to `Limits.min_rate`).
        ssl_context: for https; the system's default trust store if not given.
        limits: what one exchange may cost (`Limits`).
    """

    def __init__(self, scheme: str, host: str, port: int, *, connections: int = 64, connect_timeout: float = 30,
                 read_timeout: float = 120, ssl_context: ssl.SSLContext | None = None,
                 limits: Limits = LIMITS) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self.limits = limits
        self._tls = (ssl_context or ssl.create_default_context()) if scheme == "https" else None
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(connections)
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._closed = False

    @classmethod
    def for_url(cls, url: str, *, ca_bundle: str | None = None, **options: Any) -> HttpClient:
        """A client for `url`'s scheme, host and port (443 or 80 by default); over https, certificates
        are checked against `ca_bundle`, else the system's trust store. `options` as for the constructor."""
        parts = urllib.parse.urlsplit(url)
        tls = ssl.create_default_context(cafile=ca_bundle or None) if parts.scheme == "https" else None
        return cls(parts.scheme, parts.hostname or "", parts.port or (443 if tls else 80), ssl_context=tls, **options)

    async def request(self, method: str, target: str, headers: Iterable[tuple[str, str]], body: Body = b"", *,
                      limit: int | None = None, idempotent: bool | None = None) -> tuple[Answer, bytes]:
        """Send one request (`target` already percent-encoded) and read the whole answer.

        Args:
            limit: the most body bytes the answer may carry (what a ranged GET or a HEAD promised);
                `Limits.body_bytes` if not given. A longer body raises `AnswerRefused`.
            idempotent: whether the request may be sent again when a kept connection dies before
                any answer (default: by method, `IDEMPOTENT`). A resent request's answer says
                `replayed`.
        """
        async with self._exchange(method, target, headers, body, streaming=False, limit=limit,
                                  idempotent=idempotent) as conn:
            answer = await conn.answer()
            return answer, await conn.body()

    @contextlib.asynccontextmanager
    async def stream(self, method: str, target: str, headers: Iterable[tuple[str, str]], *,
                     limit: int | None = None) -> AsyncIterator[tuple[Answer, AsyncIterator[bytes]]]:
        """Send one request and hand out its answer's head and body chunks as they arrive (`limit`:
        the most body bytes taken; none if not given, the reader bounds what it takes)."""
        async with self._exchange(method, target, headers, b"", streaming=True,
                                  limit=limit if limit is not None else 2**63, idempotent=None) as conn:
            yield await conn.answer(), conn.chunks()

    async def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    @contextlib.asynccontextmanager
    async def _exchange(self, method: str, target: str, headers: Iterable[tuple[str, str]], body: Body, *,
                        streaming: bool, limit: int | None, idempotent: bool | None) -> AsyncIterator[Connection]:
        length = body.length if isinstance(body, Streamed) else len(body)
        head = _head(method, target, headers, length)
        resend = method in IDEMPOTENT if idempotent is None else idempotent
        await self._slots.acquire()
        try:
            for attempt in range(2):  # a kept connection the server closed while idle: once more, on a new one
                conn, reused = await self._connection()
                check_send_by(f"{self.scheme}://{self.host}:{self.port}", target)  # no await from here to the write
                conn.send(head, body if isinstance(body, bytes) else b"", head_only=method == "HEAD",
                          streaming=streaming, read_timeout=self.read_timeout,
                          limit=self.limits.body_bytes if limit is None else limit)
                try:
                    if isinstance(body, Streamed):
                        await conn.send_body(body.chunks(), length)
                    answer = await conn.answer()
                except ConnectionError:
                    conn.close()
                    if reused and not conn.got_any and resend:
                        continue
                    raise
                except BaseException:
                    conn.close()
                    raise
                answer.replayed = attempt > 0
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

    async def _connection(self) -> tuple[Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: Connection(loop, self.limits), self.host, self.port, ssl=self._tls,
                server_hostname=self.host if self._tls else None), self.connect_timeout)
        except TimeoutError:
            raise TimeoutError(f"no connection to {self.host}:{self.port} in {self.connect_timeout:.0f} s") from None
        except OSError as e:  # refused, unknown host (socket.gaierror), no route
            raise CannotConnect(f"cannot connect to {self.host}:{self.port} ({e.strerror or e})") from e
        return conn, False


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 5.6.2: a method or header name
_TARGET = re.compile(r"[\x21-\x7e]+")  # visible ASCII: no space, no control, nothing to split a request


def _head(method: str, target: str, headers: Iterable[tuple[str, str]], length: int) -> bytes:
    """The request's head, refusing whatever could split it or smuggle a second request: whoever calls."""
    if not _TOKEN.fullmatch(method):
        raise ValueError(f"method {method!r}: not an HTTP token")
    if not _TARGET.fullmatch(target):
        raise ValueError(f"request target {target!r}: only visible ASCII may go in (percent-encode the rest)")
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name!r}: not an HTTP token")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r}: a line break or NUL in a header would split the request")
        lines.append(f"{name}: {value}\r\n")
    if length or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {length}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")
