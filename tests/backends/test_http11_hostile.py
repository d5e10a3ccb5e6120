"""The HTTP/1.1 client's parsing fuzzed (Hypothesis over framings, splits and corruptions), and the
rules that keep a request from being split or replayed where it must not be."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fscas.backends.http11 import LIMITS, AnswerRefused, HttpClient
from fscas.backends.http11_conn import Connection


class _Transport(asyncio.Transport):
    """What `Connection` needs of an asyncio transport; records what was written and whether it was aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:  # type: ignore[override]
        self.written += bytes(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        pass


def _frame(status: int, headers: list[tuple[str, str]], body: bytes, framing: str, chunks: list[int]) -> bytes:
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    if framing == "length":
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    if framing == "close":
        return (head + "Connection: close\r\n\r\n").encode() + body
    out, at = [(head + "Transfer-Encoding: chunked\r\n\r\n").encode()], 0
    for size in [*chunks, len(body)]:
        piece = body[at:at + max(1, size)]
        if piece:
            out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        at += len(piece)
    out.append(b"0\r\n\r\n")
    return b"".join(out)


async def _feed(data: bytes, cuts: list[int], *, limit: int) -> tuple[Any, bytes | BaseException]:
    """`data` fed to a connection in pieces cut at `cuts`, then the server closes: (answer, body or error)."""
    conn = Connection(asyncio.get_running_loop(), LIMITS)
    transport = _Transport()
    conn.connection_made(transport)
    conn.send(b"GET / HTTP/1.1\r\n\r\n", b"", head_only=False, streaming=False, read_timeout=5, limit=limit)
    at = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        if cut > at and not transport.aborted:
            conn.data_received(data[at:cut])
            at = cut
    if not transport.aborted:
        conn.connection_lost(None)
    try:
        answer = await asyncio.wait_for(conn.answer(), 1)
        return answer, await asyncio.wait_for(conn.body(), 1)
    except (ConnectionError, AnswerRefused) as e:
        return None, e
    finally:
        conn.close()


_names = st.sampled_from(["ETag", "X-Amz-Meta-A", "Last-Modified", "X-Amz-Meta-A", "Server", "x-amz-version-id"])
_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40).map(str.strip)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.sampled_from([200, 206, 404, 500]), headers=st.lists(st.tuples(_names, _values), max_size=8),
       body=st.binary(max_size=3000), framing=st.sampled_from(["length", "chunked", "close"]),
       chunks=st.lists(st.integers(1, 700), max_size=6), cuts=st.lists(st.integers(0, 4000), max_size=8))
def test_any_framing_split_anywhere_parses_to_the_same_answer(status: int, headers: list[tuple[str, str]],
                                                              body: bytes, framing: str, chunks: list[int],
                                                              cuts: list[int]) -> None:
    data = _frame(status, headers, body, framing, chunks)
    answer, got = asyncio.run(_feed(data, cuts, limit=len(body)))
    assert answer is not None, got
    assert answer.status == status and got == body
    for name, _ in headers:  # a repeated header's values joined in order, as RFC 9110 5.3 says
        values = [v for n, v in headers if n.lower() == name.lower()]
        assert answer.headers[name.lower()] == ", ".join(values)


@settings(max_examples=400, deadline=None)
@given(body=st.binary(min_size=1, max_size=2000), framing=st.sampled_from(["length", "chunked", "close"]),
       flips=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255)), min_size=1, max_size=4),
       cuts=st.lists(st.integers(0, 3000), max_size=6), limit=st.integers(0, 2500))
def test_a_corrupt_or_oversized_answer_is_one_clean_error_or_a_bounded_body(
        body: bytes, framing: str, flips: list[tuple[int, int]], cuts: list[int], limit: int) -> None:
    data = bytearray(_frame(200, [("ETag", '"e"')], body, framing, [300]))
    for at, byte in flips:
        data[at % len(data)] = byte
    answer, got = asyncio.run(_feed(bytes(data), cuts, limit=limit))
    if answer is None:
        assert isinstance(got, (ConnectionError, AnswerRefused)), got
    else:  # what parsed is never more than the caller allowed
        assert isinstance(got, bytes) and len(got) <= limit


def test_error_bodies_are_kept_to_their_cap_and_the_connection_dropped() -> None:
    body = b"<Error><Code>SlowDown</Code></Error>" + b"e" * (LIMITS.error_body_bytes * 3)
    answer, got = asyncio.run(_feed(_frame(503, [], body, "chunked", [5000] * 5), [7, 9000],
                                    limit=LIMITS.body_bytes))
    assert answer.status == 503 and got == body[:LIMITS.error_body_bytes]


def test_a_request_that_could_be_split_is_refused_whoever_calls() -> None:
    async def main() -> None:
        client = HttpClient("http", "127.0.0.1", 9)
        for target in ("/a\r\nX: y", "/a\nb", "/a\0", "/a\x0bb", "/a b", "/\x7f"):
            with pytest.raises(ValueError, match="request target"):
                await client.request("GET", target, [])
        with pytest.raises(ValueError, match="not an HTTP token"):
            await client.request("GET /x HTTP/1.1\r\n", "/", [])
        with pytest.raises(ValueError, match="not an HTTP token"):
            await client.request("GET", "/", [("X-A: 1\r\nX-B", "2")])
        with pytest.raises(ValueError, match="NUL"):
            await client.request("GET", "/", [("X-A", "1\0")])
        await client.close()
    asyncio.run(main())


def test_a_non_idempotent_request_is_not_replayed_and_a_replay_is_reported() -> None:
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:  # answers a connection's first request; closes it unanswered on its second
            for n in range(2):
                head = await reader.readuntil(b"\r\n\r\n")
                requests.append(head.split(b" ", 1)[0])
                if n == 0:
                    if b"Content-Length: 1" in head:
                        await reader.readexactly(1)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        client = HttpClient("http", "127.0.0.1", server.sockets[0].getsockname()[1], connections=1)
        assert (await client.request("GET", "/", []))[0].replayed is False
        with pytest.raises(ConnectionError):
            await client.request("POST", "/", [])  # may have reached the server: never sent twice
        assert requests == [b"GET", b"POST"]
        await client.request("GET", "/", [])  # a fresh connection
        requests.clear()
        answer, _ = await client.request("PUT", "/", [("If-None-Match", "*")], b"x")
        assert answer.replayed is True and requests == [b"PUT", b"PUT"]  # the caller must resolve a 412
        await client.close()
        server.close()
    asyncio.run(main())
