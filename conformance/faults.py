"""A fault-injecting HTTP proxy for tests: put it between a client and a real server on 127.0.0.1.

Each client connection carries one request (the proxy asks for `Connection: close` upstream and
downstream). For a chosen fraction of requests it injects one fault:

- `error`: answers 503 (S3 `SlowDown` XML) without forwarding the request;
- `reset`: forwards the request, relays the first `reset_after` bytes of the answer, then resets;
- `delay`: waits `delay` seconds before forwarding;
- `stall`: holds the connection silent for `stall` seconds, then resets it.

Faults are drawn from a seeded RNG, at most `max_faults` of them, and the proxy stops injecting
after `max_seconds`: a test always ends. With `check_payload` it also refuses a body that does not
hash to its signed `x-amz-content-sha256`, as AWS and MinIO do and moto and SeaweedFS do not.
Usable from any test suite:

    with FaultProxy(upstream="http://127.0.0.1:9000", rate=0.1, seed=7) as proxy:
        store = fscas.open_store(f"s3://bucket?endpoint_url={proxy.url}")
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from types import TracebackType

__all__ = ["FaultProxy"]

_503 = (b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\nContent-Length: %d\r\n\r\n")
_400 = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\nConnection: close\r\nContent-Length: %d\r\n\r\n")
_MISMATCH = (b"<?xml version=\"1.0\"?><Error><Code>XAmzContentSHA256Mismatch</Code><Message>The provided "
             b"'x-amz-content-sha256' header does not match what was computed.</Message></Error>")
_BODY = b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>injected by fscas FaultProxy</Message></Error>"


class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 that injects faults into a fraction of requests.

    Args:
        upstream: `http://host:port` of the real server.
        rate: fraction of requests that get a fault (0 disables faults).
        kinds: which faults to draw from.
        seed: RNG seed, for repeatable runs.
        max_faults: stop injecting after this many.
        max_seconds: stop injecting after this long.
        check_payload: answer 400 `XAmzContentSHA256Mismatch` to a body whose SHA-256 is not the
            hex `x-amz-content-sha256` it was signed with (`UNSIGNED-PAYLOAD` passes).
    """

    def __init__(self, upstream: str, *, rate: float = 0.1, kinds: Sequence[str] = ("error", "reset", "delay", "stall"),
                 seed: int = 0, max_faults: int = 10_000, max_seconds: float = 300.0, delay: float = 0.3,
                 stall: float = 2.0, reset_after: int = 100, check_payload: bool = False) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rate, self.kinds, self.max_faults, self.max_seconds = rate, tuple(kinds), max_faults, max_seconds
        self.delay, self.stall, self.reset_after = delay, stall, reset_after
        self.check_payload = check_payload
        self.mismatched = 0  # bodies refused by `check_payload`
        self._rng = random.Random(seed)
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.heads: list[bytes] = []  # every request's head as received, for tests that check what was asked
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fscas-fault-proxy", daemon=True)
        self._started = 0.0
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        self._started = time.monotonic()
        return self

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._server = None

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _draw(self) -> str | None:
        self.requests += 1
        if (self.rate <= 0 or sum(self.injected.values()) >= self.max_faults
                or time.monotonic() - self._started > self.max_seconds or self._rng.random() >= self.rate):
            return None
        kind = self._rng.choice(self.kinds)
        self.injected[kind] += 1
        return kind

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        self.heads.append(head)
        fault = self._draw()
        try:
            body = b""
            if self.check_payload and (declared := _signed_sha256(head)) is not None:
                body = await reader.readexactly(_content_length(head))
                if hashlib.sha256(body).hexdigest() != declared:
                    self.mismatched += 1
                    writer.write(_400 % len(_MISMATCH) + _MISMATCH)
                    await writer.drain()
                    return
            if fault == "error":
                writer.write(_503 % len(_BODY) + _BODY)
                await writer.drain()
                return
            if fault == "stall":
                await asyncio.sleep(self.stall)
                _reset(writer)
                return
            if fault == "delay":
                await asyncio.sleep(self.delay)
            reset_after = self.reset_after if fault == "reset" else None
            await self._forward(_close_after(head) + body, reader, writer, reset_after)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _forward(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       reset_after: int | None) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        up_writer.write(head)

        async def client_to_server() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()

        pump = asyncio.create_task(client_to_server())
        sent = 0
        try:
            while data := await up_reader.read(65536):
                if reset_after is not None and sent + len(data) > reset_after:
                    writer.write(data[: max(0, reset_after - sent)])
                    await writer.drain()
                    _reset(writer)
                    return
                writer.write(data)
                await writer.drain()
                sent += len(data)
        finally:
            pump.cancel()
            up_writer.close()


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _content_length(head: bytes) -> int:
    value = _header(head, b"content-length")
    return int(value) if value and value.isdigit() else 0


def _signed_sha256(head: bytes) -> str | None:
    """The hex SHA-256 a request's signature carries for its body (None: unsigned or streaming)."""
    value = _header(head, b"x-amz-content-sha256")
    if value is None or len(value) != 64 or not all(c in b"0123456789abcdef" for c in value):
        return None
    return value.decode()


def _close_after(head: bytes) -> bytes:
    """The request head with `Connection: close`, so the answer ends when the server closes."""
    lines = [ln for ln in head.split(b"\r\n") if ln and not ln.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close", b"", b""])


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN, as a crashed server or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
