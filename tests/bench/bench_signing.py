"""S3 request cost: client CPU and wall time per HEAD against moto, fscas's fast path side by side with
fscas over botocore (`fast_path=false`) and plain boto3 `head_object`; and the fast path's signing alone.

Each client runs `--runs` times in alternating order, in one process, against one moto server; CPU is
this process's `process_time` (moto runs in its own process). Writes its section of RESULTS.md.

Run: `python tests/bench/bench_signing.py [--requests 2000] [--runs 2] [--results tests/bench/RESULTS.md]`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_snapshot import machine, write_section

from fscas.backends import open_backend
from fscas.conformance.emulators import start_emulator

Row = tuple[float, float, float | None]  # CPU ms/request, wall ms/request, signing alone ms


async def fscas_heads(url: str, options: dict[str, Any], requests: int) -> Row:
    backend = open_backend(url, **options)
    try:
        await backend.put("probe", b"x" * 100)
        await backend.head("probe")  # session, credentials
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(requests):
            await backend.head("probe")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        fast = getattr(backend, "_http", None)
        sign = None
        if fast is not None:
            n = 20_000
            sign = time.process_time()
            for _ in range(n):
                await fast._signed("HEAD", "/sign-bench/probe", {}, b"")
            sign = (time.process_time() - sign) / n * 1e3
        return cpu / requests * 1e3, wall / requests * 1e3, sign
    finally:
        await backend.aclose()


def boto3_heads(endpoint: str, options: dict[str, Any], requests: int) -> Row:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=options["key"], aws_secret_access_key=options["secret"])
    client.put_object(Bucket="sign-bench", Key="probe-boto3", Body=b"x" * 100)
    client.head_object(Bucket="sign-bench", Key="probe-boto3")
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        client.head_object(Bucket="sign-bench", Key="probe-boto3")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / requests * 1e3, wall / requests * 1e3, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args()
    rows: list[tuple[str, int, Row]] = []
    with start_emulator("s3") as moto:
        moto.create_bucket("sign-bench")
        url, opts = moto.store_url("sign-bench"), moto.options()
        clients: list[tuple[str, Callable[[], Row]]] = [
            ("fscas fast path (awscrt signer, httptools HTTP/1.1)",
             lambda: asyncio.run(fscas_heads(url, opts, args.requests))),
            ("fscas `fast_path=false` (s3fs / aiobotocore)",
             lambda: asyncio.run(fscas_heads(url, {**opts, "fast_path": False}, args.requests))),
            ("boto3 `head_object`", lambda: boto3_heads(moto.endpoint, opts, args.requests)),
        ]
        for run in range(1, args.runs + 1):
            for name, measure in clients if run % 2 else clients[::-1]:
                rows.append((name, run, measure()))
    section = "\n".join([
        "## S3 request cost: fast path vs botocore (issue: Speed)",
        "",
        f"{machine()} · moto on loopback · `python tests/bench/bench_signing.py --requests {args.requests}` · "
        "one process, clients in alternating order, every run reported; CPU is the client's `process_time`.",
        "",
        "| client | run | client CPU ms/HEAD | wall ms/HEAD | signing alone ms |",
        "|---|---:|---:|---:|---:|",
        *(f"| {name} | {run} | {cpu:.3f} | {wall:.3f} | {'' if sign is None else f'{sign:.4f}'} |"
          for name, run, (cpu, wall, sign) in rows),
        "",
    ])
    write_section(args.results, section)
    print(section)


if __name__ == "__main__":
    main()
