"""Scale-out benchmark: snapshot, push and pull on one process vs `--processes N`, one run each, in turn.

The tree is small files (hashing and file creation bound, where a second interpreter helps past the
GIL) plus a few large ones, pushed to a SeaweedFS S3 gateway on loopback (each mode in its own
bucket, so every push uploads everything). `--files 1000000` gives the opt-in million-file run.

Run: `python tests/bench/bench_distributed.py [--files 20000] [--processes 2] [--results RESULTS.md]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_snapshot import machine, write_section
from peak import measured
from tree import make_tree

from fscas.conformance.emulators import SeaweedFSEmulator


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, dict[str, object]]:
    """(seconds, peak RSS MiB, --json output) of one run. The RSS is that process's own (`peak`),
    which covers its waited-for children (the --processes pool) too: the largest of them."""
    m = measured(cmd, env)
    if m.code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {m.stderr.decode(errors='replace')}")
    return m.seconds, m.rss_mib, json.loads(m.stdout) if m.stdout.strip() else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000, help="small files (plus 8 x 128 MiB unless --tiny)")
    ap.add_argument("--tiny", action="store_true",
                    help="the opt-in scale run: only small files, snapshot only (e.g. --files 1000000 --tiny)")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fscas-bench-dist")
    ap.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args()
    root = args.work / f"tree-{args.files}{'-tiny' if args.tiny else ''}"
    total = (make_tree(root, small=args.files, large=0, small_size=(0, 1024), folders=max(100, args.files // 1000))
             if args.tiny else make_tree(root, small=args.files))
    if args.tiny:
        return snapshot_only(root, args)
    rows: list[str] = []
    with SeaweedFSEmulator().start() as sw:
        env = {**os.environ, **sw.env(), "XDG_CACHE_HOME": str(args.work / "cache")}
        modes = {"1 process": [], f"--processes {args.processes}": ["--processes", str(args.processes)]}
        results: dict[str, dict[str, float]] = {}
        for mode, flags in modes.items():
            bucket = f"dist-{len(results)}-{int(time.time())}"
            sw.create_bucket(bucket)
            store = sw.store_url(bucket)
            shutil.rmtree(args.work / "cache", ignore_errors=True)
            fscas = [sys.executable, "-m", "fscas"]
            snap = timed([*fscas, "manifest", "snapshot", str(root), "--no-cache", "-o", str(args.work / "m.json"),
                          "--json", *flags], env)
            push = timed([*fscas, "push", str(root), "--store", store, "--json", *flags], env)
            dest = args.work / "dest"
            shutil.rmtree(dest, ignore_errors=True)
            pull = timed([*fscas, "pull", str(push[2]["key"]), str(dest), "--store", store, "--json", *flags], env)
            shutil.rmtree(dest, ignore_errors=True)
            results[mode] = {"snapshot": snap[0], "push": push[0], "pull": pull[0]}
            for name, r in (("snapshot (cold)", snap), ("push (cold hash cache)", push), ("pull", pull)):
                rows.append(f"| {name} | {mode} | {r[0]:.2f} | {r[1]:.0f} |")
    one, many = results["1 process"], results[f"--processes {args.processes}"]
    section = "\n".join([
        "## Scale-out: --processes (issue: Scale out)",
        "",
        f"{machine()} · SeaweedFS S3 gateway on loopback · tree: {args.files + 8} files, {total / 2**20:.0f} MiB "
        f"({args.files:,} × 1–16 KiB + 8 × 128 MiB). One run per row, modes in turn; each mode pushes to its own "
        "empty bucket with an empty hash cache.",
        "",
        "| run | mode | seconds | peak RSS MiB (largest process) |",
        "|---|---|---:|---:|",
        *rows,
        "",
        "| step | speed-up with --processes |",
        "|---|---:|",
        *(f"| {k} | {one[k] / many[k]:.2f}× |" for k in ("snapshot", "push", "pull")),
        "",
    ])
    write_section(args.results, section)
    print(section)


def snapshot_only(root: Path, args: argparse.Namespace) -> None:
    """The opt-in million-file run: snapshot through the executor path, time and peak RSS."""
    env = dict(os.environ)
    rows = []
    for mode, flags in (("1 process", []), (f"--processes {args.processes}", ["--processes", str(args.processes)])):
        seconds, rss, out = timed([sys.executable, "-m", "fscas", "manifest", "snapshot", str(root), "--no-cache",
                                   "-o", str(args.work / "m.json"), "--json", *flags], env)
        rows.append(f"| {mode} | {out['files']:,} | {seconds:.1f} | {rss:.0f} |")
    section = "\n".join([
        f"## Scale-out: {args.files:,}-file snapshot (issue: Scale out, opt-in)",
        "",
        f"{machine()} · {args.files:,} files of 0–1 KiB in {max(100, args.files // 1000)} folders, generated; "
        "page cache warm; no hash cache.",
        "",
        "| mode | files | seconds | peak RSS MiB (largest process) |",
        "|---|---:|---:|---:|",
        *rows,
        "",
    ])
    write_section(args.results, section)
    print(section)


if __name__ == "__main__":
    main()
