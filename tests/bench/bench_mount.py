"""Reading a snapshot through `fscas mount` vs `fscas pull` of it: tree (m) on SeaweedFS, every run reported.

Tree (m) of the clouds benchmark (10,000 × 1–16 KiB + 2 × 32 MiB) is pushed once. Per run, in
alternating order and each with an empty content cache: `fscas pull KEY DEST`, and `fscas mount KEY
MNT` then `cp -r MNT DEST` (every file read once through FUSE, fetched on first read, the small files
after it fetched ahead), both at the default concurrency (32 transfers in flight). The mount is
timed from its launch to the end of `cp` (its start-up counted, as the pull's is), `cp` alone beside
it. Every timed step starts after `sync`, the page cache emptied (as root) and `--pause` seconds
idle. Target: mount within 1.5× of pull.

Run: `python tests/bench/bench_mount.py [--runs 2] [--pause 15] [--dest FOLDER]`. `--dest` puts both
destinations elsewhere (a tmpfs: what both write is then not charged for the disk's file creation,
which `cp -r` pays one file at a time and a pull in parallel).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_rclone
from bench_clouds import TREES
from bench_distributed import timed
from bench_snapshot import compile_fscas, machine, write_section
from tree import make_tree

from fscas.conformance.emulators import SeaweedFSEmulator


def _mounted_copy(key: str, store: str, mnt: Path, dest: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds from the mount's launch to the end of `cp -r`, seconds of `cp -r` alone)."""
    mnt.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log = open(mnt.parent / f"{mnt.name}.log", "wb")  # noqa: SIM115 - a pipe nobody reads would stall the mount
    proc = subprocess.Popen([sys.executable, "-m", "fscas", "mount", key, str(mnt), "--store", store], env=env,
                            stderr=log)
    try:
        while not os.path.ismount(mnt):
            if proc.poll() is not None:
                raise SystemExit(f"fscas mount exited: {(mnt.parent / f'{mnt.name}.log').read_text()}")
            time.sleep(0.01)
        copied = time.monotonic()
        subprocess.run(["cp", "-r", str(mnt), str(dest)], check=True)
        done = time.monotonic()
    finally:
        subprocess.run(["fusermount", "-u", str(mnt)], capture_output=True)
        proc.wait(60)
        log.close()
    return done - started, done - copied


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--pause", type=float, default=15.0, help="seconds of idle before every timed step")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "fscas-bench")
    ap.add_argument("--dest", type=Path, default=None,
                    help="folder for the pull's and cp's destinations (default: the work folder, under TMPDIR)")
    ap.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args()
    bench_rclone.PAUSE = args.pause
    compile_fscas()
    label, shape = TREES["m"]
    root = args.data / "tree-clouds-m"
    make_tree(root, **shape)  # type: ignore[arg-type]
    rows: list[str] = []
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fscas-bench-mount-") as tmp, SeaweedFSEmulator().start() as sw:
        work = Path(tmp)
        dests = args.dest or work
        sw.create_bucket("mount-bench")
        store = sw.cli_url("mount-bench", "root")
        env = {**os.environ, **sw.env(), "XDG_CACHE_HOME": str(work / "cache-push")}
        _, _, pushed = timed([sys.executable, "-m", "fscas", "push", str(root), "--store", store, "--json"], env)
        key = str(pushed["key"])
        files = sum(1 for p in root.rglob("*") if p.is_file())
        for run in range(1, args.runs + 1):
            order = ["pull", "mount"] if run % 2 else ["mount", "pull"]
            got: dict[str, tuple[float, float]] = {}
            for step in order:
                run_env = {**env, "XDG_CACHE_HOME": str(work / f"cache-{run}-{step}")}
                dest = dests / f"dest-{run}-{step}"
                bench_rclone.DROPPED.append(bench_rclone.settle())
                if step == "pull":
                    s, rss, _ = timed([sys.executable, "-m", "fscas", "pull", key, str(dest), "--store", store,
                                       "--json"], run_env)
                    got[step] = (s, rss)
                else:
                    got[step] = _mounted_copy(key, store, work / f"mnt-{run}", dest, run_env)
                copied = sum(1 for p in dest.rglob("*") if p.is_file())
                shutil.rmtree(dest, ignore_errors=True)
                if copied != files:
                    raise SystemExit(f"{step} run {run}: {copied} of {files} files arrived")
            ratio = got["mount"][0] / got["pull"][0]
            ratios.append(ratio)
            rows.append(f"| {run} | {' then '.join(order)} | {got['pull'][0]:.2f} | {got['pull'][1]:.0f} | "
                        f"{got['mount'][0]:.2f} | {got['mount'][1]:.2f} | {ratio:.2f} |")
            print(rows[-1], flush=True)
    section = "\n".join([
        "## Reading through `fscas mount` vs `fscas pull` (issue: Every cloud first-class)",
        "",
        f"{machine()} · SeaweedFS (S3, auth on) on loopback · tree (m) {label} · `fscas pull` vs `fscas mount` "
        f"+ `cp -r`, both at the default concurrency (32 in flight), each with an empty content cache · "
        f"{bench_rclone.settled_note(all(bench_rclone.DROPPED))} · every run reported. Ratio = mount seconds / "
        f"pull seconds (target ≤ 1.5). Work folders (content caches, SeaweedFS's data) in `{tempfile.gettempdir()}`,"
        f" destinations in `{args.dest or tempfile.gettempdir()}`.",
        "",
        "| run | order | pull s | pull RSS MiB | mount + cp -r s | cp -r alone s | ratio |",
        "|---:|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Target ≤ 1.5× every run: {' / '.join(f'{r:.2f}' for r in ratios)} — "
        f"{'met' if max(ratios) <= 1.5 else 'NOT met'}.",
        "",
    ])
    write_section(args.results, section)
    print(section)


if __name__ == "__main__":
    main()
