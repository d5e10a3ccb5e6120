"""A hostile S3 endpoint against `fscas pull` and `ls`: every way of answering badly that once hung a
pull or ate memory ends in bounded time and memory, with one clean error naming the key (and
nothing left in the destination) or a verified file.

The endpoint is a scripted asyncio server on 127.0.0.1 that speaks just enough S3 for the fast path:
each test picks how it answers the GET of the one data object the manifest names.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import xxhash
from cli_runner import run_fscas_peak

from fscas.backends.s3 import S3Backend, S3Options

Answer = Callable[[asyncio.StreamWriter, int], Awaitable[None]]
SIZE = 300_000
BODY = bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256)


class Hostile:
    """An S3-ish endpoint: the data object's GET is answered by `answer`; listings by `listing`;
    anything else 404. Counts the GETs of the object."""

    def __init__(self) -> None:
        self.answer: Answer = _whole
        self.listing: Callable[[int], bytes] | None = None
        self.gets = 0
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        ready.wait(10)

    def url(self, **options: object) -> str:
        extra = "".join(f"&{k}={v}" for k, v in options.items())
        return f"s3://bkt/root?endpoint_url=http://127.0.0.1:{self.port}&key=AKID&secret=s3cr3t{extra}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode()
                length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length:")), 0)
                if length:
                    await reader.readexactly(length)
                method, target, _ = line.split(" ")
                if method == "GET" and "/Data/" in target:
                    self.gets += 1
                    await self.answer(writer, self.gets)
                elif method == "GET" and "list-type=2" in target and self.listing is not None:
                    body = self.listing(self.gets)
                    self.gets += 1
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                else:
                    body = b"<Error><Code>NoSuchKey</Code></Error>"
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _whole(writer: asyncio.StreamWriter, n: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE + BODY)


async def _endless_chunked(writer: asyncio.StreamWriter, n: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"%x\r\n%s\r\n" % (65536, b"z" * 65536)
    while True:
        writer.write(piece)
        await writer.drain()


async def _endless_length(writer: asyncio.StreamWriter, n: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n")
    while True:
        writer.write(b"z" * 65536)
        await writer.drain()


async def _drip(writer: asyncio.StreamWriter, n: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE)
    for i in range(SIZE):
        writer.write(BODY[i:i + 1])
        await writer.drain()
        await asyncio.sleep(0.2)


async def _huge_head(writer: asyncio.StreamWriter, n: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n")
    for _ in range(4096):  # 32 MiB of headers
        writer.write(b"X-Pad: " + b"p" * 8192 + b"\r\n")
        await writer.drain()
    writer.write(b"Content-Length: %d\r\n\r\n" % SIZE + BODY)


async def _one_header_repeated(writer: asyncio.StreamWriter, n: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n" + b"X-A: v\r\n" * 200_000 + b"Content-Length: %d\r\n\r\n" % SIZE + BODY)


async def _endless_error(writer: asyncio.StreamWriter, n: int) -> None:
    error = b"<Error><Code>AccessDenied</Code></Error>"
    writer.write(b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(error), error))
    while True:
        writer.write(b"%x\r\n%s\r\n" % (65536, b"e" * 65536))
        await writer.drain()


async def _longer_than_promised(writer: asyncio.StreamWriter, n: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (SIZE + 100) + BODY + b"!" * 100)


async def _close_delimited(writer: asyncio.StreamWriter, n: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY)
    await writer.drain()
    writer.close()
    raise ConnectionError("closed")  # ends the handler's loop


async def _slow_down_twice(writer: asyncio.StreamWriter, n: int) -> None:
    if n <= 2:
        body = b"<Error><Code>SlowDown</Code></Error>"
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    else:
        await _whole(writer, n)


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    yield server
    server.close()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    (src / "object.bin").write_bytes(BODY)
    out = src.parent / "object.manifest"
    subprocess.run([sys.executable, "-m", "fscas", "manifest", "snapshot", str(src), "-o", str(out)], check=True,
                   capture_output=True, timeout=60)
    return out


def _pull(manifest: Path, dest: Path, url: str) -> tuple[int, str, float, float]:
    """`fscas pull`: (exit code, stderr, seconds, peak RSS in MiB)."""
    started = time.monotonic()
    r, peak = run_fscas_peak("pull", str(manifest), str(dest), "--store", url, home=dest.parent, timeout=120)
    return r.returncode, r.stderr, time.monotonic() - started, peak


REFUSED = {
    "endless chunked body": (_endless_chunked, "answer body longer than the 300000 bytes expected"),
    "endless Content-Length body": (_endless_length, "answer body longer than the 300000 bytes expected"),
    "more bytes than promised": (_longer_than_promised, "answer body longer than the 300000 bytes expected"),
    "32 MiB of headers": (_huge_head, "answer head larger than 65536 bytes"),
    "one header repeated": (_one_header_repeated, "answer with more than 256 header lines"),
    "endless error body": (_endless_error, "access denied (AccessDenied)"),
    "one byte every 0.2 s": (_drip, "answer slower than 16 KiB/s"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_hostile_answer_ends_in_one_clean_error(case: str, hostile: Hostile, manifest: Path,
                                                   tmp_path: Path) -> None:
    hostile.answer, said = REFUSED[case]
    dest = tmp_path / "dest"
    code, stderr, seconds, rss = _pull(manifest, dest, hostile.url(read_timeout=1))
    assert code == 1, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert "Data/" in stderr and said in stderr, stderr  # names the key and the limit
    assert seconds < 30 and rss < 250, (seconds, rss)
    assert not [p for p in dest.rglob("*") if p.is_file()]  # no file, no temporary left


@pytest.mark.parametrize("answer", [_close_delimited, _slow_down_twice], ids=["close-delimited", "429 twice"])
def test_an_unusual_but_honest_answer_gives_the_file(answer: Answer, hostile: Hostile, manifest: Path,
                                                     tmp_path: Path) -> None:
    hostile.answer = answer
    code, stderr, _, _ = _pull(manifest, tmp_path / "dest", hostile.url(read_timeout=5))
    assert code == 0, stderr
    assert xxhash.xxh3_128_hexdigest((tmp_path / "dest" / "object.bin").read_bytes()) == xxhash.xxh3_128_hexdigest(BODY)


def _page(keys: list[str], token: str | None) -> bytes:
    contents = "".join(f"<Contents><Key>root/{k}</Key><Size>1</Size></Contents>" for k in keys)
    more = f"<IsTruncated>true</IsTruncated><NextContinuationToken>{token}</NextContinuationToken>" if token \
        else "<IsTruncated>false</IsTruncated>"
    return f'<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' \
           f"{contents}{more}</ListBucketResult>".encode()


@pytest.mark.parametrize("pages", ["same token", "keys go back", "endless empty pages"])
def test_a_listing_that_never_ends_is_refused(pages: str, hostile: Hostile) -> None:
    hostile.listing = {
        "same token": lambda n: _page([f"Manifests/k{n:05}"], "again"),
        "keys go back": lambda n: _page(["Manifests/a"], f"t{n}"),
        "endless empty pages": lambda n: _page([], f"t{n}"),
    }[pages]

    async def main() -> str:
        backend = S3Backend("bkt", "root", S3Options(endpoint_url=f"http://127.0.0.1:{hostile.port}", key="AKID",
                                                     secret="s3cr3t", read_timeout=5))
        try:
            async for _ in backend.list("Manifests/"):
                pass
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        finally:
            await backend.aclose()
        return "listed to the end"

    said = asyncio.run(asyncio.wait_for(main(), 60))
    assert said.startswith("StoreError: s3://bkt/root") and "listing refused" in said, said
    assert hostile.gets <= 102

