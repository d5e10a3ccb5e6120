"""S3 fast-path request cost: CPU and wall time per HEAD against moto, and the signing alone.

Run: `python tests/bench/bench_signing.py [--requests 2000]`; prints one Markdown row per measure.
Used to compare signers (our own HMAC code, then botocore's `S3SigV4Auth`, now awscrt's).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from fscas.backends import open_backend
from fscas.conformance.emulators import start_emulator


async def measure(url: str, options: dict[str, str], requests: int) -> tuple[float, float, float]:
    backend = open_backend(url, **options)
    try:
        await backend.put("probe", b"x" * 100)
        await backend.head("probe")  # session, credentials
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(requests):
            await backend.head("probe")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        fast = backend._http  # type: ignore[attr-defined]
        n = 20_000
        sign = time.process_time()
        for _ in range(n):
            await fast._signed("HEAD", "/sign-bench/probe", {}, b"")
        sign = time.process_time() - sign
        return cpu / requests * 1e3, wall / requests * 1e3, sign / n * 1e3
    finally:
        await backend.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with start_emulator("s3") as moto:
        moto.create_bucket("sign-bench")
        cpu, wall, sign = asyncio.run(measure(moto.store_url("sign-bench"), moto.options(), args.requests))
    print("| HEADs | client CPU ms/request | wall ms/request | signing alone ms |")
    print("|---:|---:|---:|---:|")
    print(f"| {args.requests} | {cpu:.3f} | {wall:.3f} | {sign:.4f} |")


if __name__ == "__main__":
    main()
