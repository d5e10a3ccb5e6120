"""Scale curve: snapshot, push and pull of generated trees of tiny files at growing sizes; time and peak RSS
per file should stay flat. One SeaweedFS S3 gateway on loopback, one run per size, each size in its own
bucket with empty caches; every step starts from an empty page cache after 45 s of idle (`settle`), so a
size's snapshot reads its tree from disk whether or not an earlier step had it cached.

A 100-file run first measures each step's fixed cost (interpreter, SDK imports, connections): the
per-file figures are above it, `(seconds - fixed) / files` and `(RSS - fixed RSS) / files`, so that
they show what each file costs rather than how far the fixed ~50-90 MiB is spread.

Run: `python tests/bench/bench_scale.py [--sizes 10000,100000,1000000] [--results tests/bench/RESULTS.md]`
(the million-file push and pull take about half an hour on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_distributed import timed
from bench_rclone import settle, settled_note
from bench_snapshot import compile_fscas, machine, write_section
from tree import make_tree

from fscas.conformance.emulators import SeaweedFSEmulator

BASELINE = 100
"""Files in the run that measures each step's fixed cost."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fscas-bench-scale")
    ap.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args()
    compile_fscas()
    sizes = [BASELINE, *(int(x) for x in args.sizes.split(","))]
    rows: list[tuple[int, str, float, float]] = []
    dropped: list[bool] = []
    with SeaweedFSEmulator().start() as sw:
        for n in sizes:
            root = args.work / f"tiny-{n}"
            make_tree(root, small=n, large=0, small_size=(0, 1024), folders=max(100, n // 1000))
            bucket = f"scale-{n}-{int(time.time())}"
            sw.create_bucket(bucket)
            url = sw.store_url(bucket, "root")
            cache = args.work / "cache"
            shutil.rmtree(cache, ignore_errors=True)
            env = {**os.environ, **sw.env(), "XDG_CACHE_HOME": str(cache)}
            py = [sys.executable, "-m", "fscas"]
            dropped.append(settle())
            s, rss, _ = timed([*py, "manifest", "snapshot", str(root), "--no-cache", "-o", str(args.work / "m.json"),
                               "--json"], env)
            rows.append((n, "snapshot (no cache)", s, rss))
            dropped.append(settle())
            s, rss, out = timed([*py, "push", str(root), "--store", url, "--json"], env)
            rows.append((n, "push (cold caches)", s, rss))
            dest = args.work / "dest"
            shutil.rmtree(dest, ignore_errors=True)
            dropped.append(settle())
            s, rss, _ = timed([*py, "pull", str(out["key"]), str(dest), "--store", url, "--json"], env)
            shutil.rmtree(dest, ignore_errors=True)
            rows.append((n, "pull", s, rss))
    section = report(rows, settled_note(all(dropped)))
    write_section(args.results, section)
    print(section)


def report(rows: list[tuple[int, str, float, float]], settled: str) -> str:
    fixed = {st: (s, rss) for n, st, s, rss in rows if n == BASELINE}
    measured = [r for r in rows if r[0] != BASELINE]
    steps = sorted({r[1] for r in measured}, key=[r[1] for r in measured].index)
    spread = []
    for step in steps:
        base_s, base_rss = fixed[step]
        t = [(s - base_s) / n * 1e6 for n, st, s, _ in measured if st == step]
        m = [(rss - base_rss) * 1024 / n for n, st, _, rss in measured if st == step]
        verdict = "yes" if max(t) <= 1.3 * min(t) and max(m) <= 1.3 * min(m) else "NO"
        spread.append(f"| {step} | {' / '.join(f'{x:.0f}' for x in t)} | {max(t) / min(t):.2f}× | "
                      f"{' / '.join(f'{x:.2f}' for x in m)} | {max(m) / min(m):.2f}× | {verdict} |")
    sizes = " / ".join(f"{n:,}" for n in sorted({r[0] for r in measured}))
    return "\n".join([
        "## Scale curve: tiny files at growing sizes (issue: Speed)",
        "",
        f"{machine()} · SeaweedFS S3 gateway on loopback · trees of 0–1 KiB files in max(100, files / 1,000) folders; one run "
        f"per row; {settled}; RSS of each process alone (`peak.py`); a 100-file run measures each step's fixed cost.",
        "",
        "| files | step | seconds | peak RSS MiB |",
        "|---:|---|---:|---:|",
        *(f"| {n:,} | {st} | {s:.1f} | {rss:.0f} |" for n, st, s, rss in rows),
        "",
        f"Per file above the fixed cost, at {sizes} files (target: flat within ±30 %):",
        "",
        "| step | µs per file | largest / smallest | KiB per file | largest / smallest | flat |",
        "|---|---:|---:|---:|---:|---|",
        *spread,
        "",
    ])


if __name__ == "__main__":
    main()
