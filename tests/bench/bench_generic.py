"""fsspec both ways, measured: the generic backend over s3fs vs the native S3 backend, and random reads
through `fscas://` vs s3fs on the object itself. One SeaweedFS S3 gateway on loopback.

1. `fscas push` / `fscas pull` of the benchmark tree with `--store s3://...` (native) and
   `--store s3://...&backend=fsspec` (generic, s3fs underneath), each in its own empty bucket, in
   turn (native, generic, generic, native), every run reported.
2. A 1 GiB file pushed once; then 256 reads of 64 KiB at random offsets through `fscas://` (cold
   content cache: the first read fetches and verifies the whole object; then warm) and through
   `s3fs.open` on `Data/<hash>.xxh128` (one ranged GET per read, nothing verified).

Run: `python tests/bench/bench_generic.py [--root DIR] [--results tests/bench/RESULTS.md]`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_distributed import timed
from bench_snapshot import machine, write_section
from tree import make_tree

from fscas.conformance.emulators import SeaweedFSEmulator

READS, READ_SIZE, BIG = 256, 64 << 10, 1 << 30


def transfers(sw: SeaweedFSEmulator, root: Path, work: Path) -> list[tuple[str, int, float, float, float, float]]:
    rows = []
    for run, kind in enumerate(("native", "generic", "generic", "native")):
        bucket = f"gen-{run}-{int(time.time())}"
        sw.create_bucket(bucket)
        url = sw.store_url(bucket, "root") + ("&backend=fsspec" if kind == "generic" else "")
        env = {**os.environ, **sw.env(), "XDG_CACHE_HOME": str(work / f"cache-{run}")}
        fscas = [sys.executable, "-m", "fscas"]
        push = timed([*fscas, "push", str(root), "--store", url, "--json"], env)
        dest = work / "dest"
        shutil.rmtree(dest, ignore_errors=True)
        pull = timed([*fscas, "pull", str(push[2]["key"]), str(dest), "--store", url, "--json"], env)
        shutil.rmtree(dest, ignore_errors=True)
        rows.append((kind, run + 1, push[0], push[1], pull[0], pull[1]))
    return rows


def random_reads(sw: SeaweedFSEmulator, work: Path) -> dict[str, float]:
    import fsspec

    import fscas
    from fscas.content import ContentCache
    from fscas.fs import FscasFileSystem

    bucket = f"reads-{int(time.time())}"
    sw.create_bucket(bucket)
    folder = work / "big"
    folder.mkdir(exist_ok=True)
    block = os.urandom(1 << 20)
    with open(folder / "one.bin", "wb") as f:
        for i in range(BIG >> 20):
            f.write(block[i % 13:] + block[:i % 13])
    url = sw.store_url(bucket, "root")
    with fscas.open_store(url, **sw.options()) as store:
        m = fscas.snapshot(folder, hash_cache=False)
        key, _, _ = store.push(m, folder, farm_id="f", queue_id="q")
    digest = m.paths[0].hash
    rng = random.Random(7)
    offsets = [rng.randrange(0, BIG - READ_SIZE) for _ in range(READS)]
    out: dict[str, float] = {}
    cache = ContentCache(work / "objects", max_bytes=4 << 30)
    fs = FscasFileSystem(url, key, cache=cache, skip_instance_cache=True, **sw.options())
    for phase in ("cold", "warm"):
        t = time.perf_counter()
        with fs.open("one.bin", "rb") as f:
            for i, off in enumerate(offsets):
                f.seek(off)
                assert len(f.read(READ_SIZE)) == READ_SIZE
                if i == 0 and phase == "cold":
                    out["fscas:// first read (fetches and verifies 1 GiB)"] = time.perf_counter() - t
        out[f"fscas:// {READS} reads, {phase} cache"] = time.perf_counter() - t
    fs.store.close()
    s3 = fsspec.filesystem("s3", endpoint_url=sw.endpoint, key=sw.access_key, secret=sw.secret_key,
                           skip_instance_cache=True)
    t = time.perf_counter()
    with s3.open(f"{bucket}/root/Data/{digest}.xxh128", "rb", block_size=READ_SIZE, cache_type="none") as f:
        for off in offsets:
            f.seek(off)
            assert len(f.read(READ_SIZE)) == READ_SIZE
    out[f"s3fs {READS} ranged reads (unverified)"] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "fscas-bench" / "tree")
    ap.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args()
    total = make_tree(args.root)
    files = sum(len(f) for _, _, f in os.walk(args.root))
    with tempfile.TemporaryDirectory(prefix="fscas-bench-gen-") as tmp, SeaweedFSEmulator().start() as sw:
        rows = transfers(sw, args.root, Path(tmp))
        reads = random_reads(sw, Path(tmp))
    mean = {k: [sum(r[i] for r in rows if r[0] == k) / 2 for i in (2, 4)] for k in ("native", "generic")}
    section = "\n".join([
        "## fsspec both ways: generic backend over s3fs vs native; fscas:// random reads (issue: fsspec)",
        "",
        f"{machine()} · SeaweedFS S3 gateway on loopback · tree: {files} files, {total / 2**20:.0f} MiB (the "
        "snapshot tree). Every run reported, in the order run; each in its own empty bucket, empty caches.",
        "",
        "| backend | run | push s | push peak RSS MiB | pull s | pull peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {k} | {n} | {a:.2f} | {b:.0f} | {c:.2f} | {d:.0f} |" for k, n, a, b, c, d in rows),
        "",
        f"Generic over s3fs vs native, mean of two runs: push {mean['generic'][0] / mean['native'][0]:.2f}× the "
        f"time, pull {mean['generic'][1] / mean['native'][1]:.2f}× the time.",
        "",
        f"Random reads: {READS} × 64 KiB at random offsets of one 1 GiB file.",
        "",
        "| reader | seconds |",
        "|---|---:|",
        *(f"| {k} | {v:.2f} |" for k, v in reads.items()),
        "",
    ])
    write_section(args.results, section)
    print(section)


if __name__ == "__main__":
    main()
