"""Snapshot benchmark: fscas vs `deadline manifest snapshot` vs a bare read+hash loop, one run.

Run: `python tests/bench/bench_snapshot.py [--root DIR] [--results tests/bench/RESULTS.md]`.
Every tool runs as its own process on the same tree with the page cache warm (the tree is read
once by the bare loop first), so the numbers compare hashing and bookkeeping, not the disk.
Peak RSS is each child process's own, measured through `peak.measured`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak import measured
from tree import make_tree

BARE = r"""
import os, sys, xxhash
from concurrent.futures import ThreadPoolExecutor
files = [os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs]
def h(p):
    x = xxhash.xxh3_128()
    with open(p, "rb") as f:
        while b := f.read(1 << 20):
            x.update(b)
    return x.hexdigest()
threads = int(sys.argv[2])
if threads == 1:
    [h(p) for p in files]
else:
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(h, files))
"""


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run `cmd`; return (seconds, peak RSS in MiB) of that process alone (see `peak`)."""
    m = measured(cmd, env)
    if m.code != 0:
        raise SystemExit(f"{cmd[0]} failed: {m.stderr.decode(errors='replace')}")
    return m.seconds, m.rss_mib


def best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The fastest run (least disturbed by the machine), with the highest RSS seen."""
    return min(r[0] for r in runs), max(r[1] for r in runs)


RUNS: dict[str, list[float]] = {}  # every run's seconds, by row: the targets hold on every run


def compile_fscas() -> None:
    """Byte-compile fscas and the environment it runs in, as `pip install` does (uv does not): an
    editable checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module it
    imports (s3fs, botocore, aiohttp: about 1.5 s) from source on every start."""
    import compileall
    import sysconfig

    import fscas

    package = Path(fscas.__file__).resolve().parent.parent
    for folder in ("cas", "manifests", "backends", "conformance"):
        compileall.compile_dir(str(package / folder), quiet=1)
    compileall.compile_dir(sysconfig.get_paths()["purelib"], quiet=1, workers=0)


def measure(root: Path, work: Path, reps: int) -> dict[str, tuple[float, float]]:
    compile_fscas()
    env = dict(os.environ)
    py = sys.executable
    bare = [py, "-c", BARE, str(root)]
    run([*bare, "1"], env)  # warm the page cache
    r: dict[str, tuple[float, float]] = {
        "bare loop, 1 thread": best([run([*bare, "1"], env) for _ in range(reps)]),
        "bare loop, 2 threads": best([run([*bare, "2"], env) for _ in range(reps)]),
    }
    for tool in ("fscas", "deadline"):
        cold, warm = [], []
        for rep in range(reps):  # each repetition starts from an empty cache
            home = work / f"{tool}-{rep}"
            (home / "out").mkdir(parents=True)
            if tool == "fscas":
                cmd = [py, "-m", "fscas", "manifest", "snapshot", str(root), "-o", str(home / "out" / "m")]
                tenv = {**env, "XDG_CACHE_HOME": str(home / "cache")}
            else:
                cmd = [shutil.which("deadline") or "deadline", "manifest", "snapshot", "--root", str(root),
                       "-d", str(home / "out"), "--json"]
                tenv = {**env, "HOME": str(home)}
            cold.append(run(cmd, tenv))
            warm.append(run(cmd, tenv))
        r[f"{tool} cold"], r[f"{tool} warm"] = best(cold), best(warm)
        RUNS[f"{tool} cold"], RUNS[f"{tool} warm"] = [c[0] for c in cold], [w[0] for w in warm]
    return r


def machine() -> str:
    """Date, host, CPUs and Python: the first words of every results section."""
    return f"{datetime.date.today()} · {platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()}"


def runs_table(r: dict[str, tuple[float, float]]) -> list[str]:
    """The `run | seconds | peak RSS` table of a results section."""
    return ["| run | seconds | peak RSS MiB |", "|---|---:|---:|", *(f"| {k} | {s:.2f} | {m:.0f} |" for k, (s, m) in r.items())]


def report(r: dict[str, tuple[float, float]], files: int, total: int) -> str:
    fc = r["fscas cold"][0]
    bare2 = r["bare loop, 2 threads"][0]
    peak = max(r["fscas cold"][1], r["fscas warm"][1])

    def ratios(kind: str) -> list[float]:  # run i of Deadline over run i of fscas
        return [d / f for d, f in zip(RUNS[f"deadline {kind}"], RUNS[f"fscas {kind}"], strict=True)]

    def every(kind: str) -> str:
        return " / ".join(f"{x:.1f}×" for x in ratios(kind))

    lines = [
        "## Snapshot (issue: Foundation)",
        "",
        f"{machine()} · tree: {files} files, {total / 2**20:.0f} MiB (10,000 × 1–16 KiB in 100 folders + 8 × 128 MiB),"
        " page cache warm. Each row is the fastest of 3 runs of one process; RSS of each process alone (`peak.py`); the targets"
        " compare run by run.",
        "",
        *runs_table(r),
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| cold within 1.5× of the two-thread bare loop | {fc / bare2:.2f}× | {'yes' if fc <= 1.5 * bare2 else 'NO'} |",
        f"| warm ≥ 30× faster than Deadline warm, every run | {every('warm')} | "
        f"{'yes' if min(ratios('warm')) >= 30 else 'NO'} |",
        f"| cold ≥ 10× faster than Deadline cold, every run | {every('cold')} | "
        f"{'yes' if min(ratios('cold')) >= 10 else 'NO'} |",
        f"| peak RSS < 200 MiB | {peak:.0f} MiB | {'yes' if peak < 200 else 'NO'} |",
        "",
        "Notes: the two-thread bare loop is slower than the one-thread loop on this tree (10,000",
        "small files make two threads hand the GIL back and forth on every tiny read), so fscas",
        "hashes cached small files on one thread (four while they come from the disk:",
        "`fscas.manifests.readers`) and large files on the others. A warm run reads the",
        "root's last-snapshot record (`fscas.manifests.snapstate`): about 0.03 s interpreter start,",
        "0.02 s imports (no attrs, no SQLite), 0.02 s stat-ing 100 folders and 10,008 files against",
        "it, 0.005 s loading it, then the stored manifest bytes are written. Both tools run with",
        "their modules byte-compiled.",
        "",
    ]
    return "\n".join(lines)


def write_section(results: Path, section: str) -> None:
    """Replace this benchmark's section of RESULTS.md, keeping the others."""
    head = section.splitlines()[0]
    old = results.read_text() if results.exists() else "# fscas benchmark results\n\n"
    parts = old.split("\n## ")
    kept = [parts[0].rstrip("\n") + "\n"] + [f"## {p.rstrip()}\n" for p in parts[1:] if not f"## {p}".startswith(head)]
    results.write_text("\n".join([*kept, section]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "fscas-bench" / "tree")
    ap.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    ap.add_argument("--reps", type=int, default=3, help="repetitions; the fastest counts")
    args = ap.parse_args()
    total = make_tree(args.root)
    time.sleep(2.5)  # let the newest files age past the hash cache's racy window
    files = sum(len(fs) for _, _, fs in os.walk(args.root))
    with tempfile.TemporaryDirectory(prefix="fscas-bench-") as work:
        r = measure(args.root, Path(work), args.reps)
    section = report(r, files, total)
    print(section)
    write_section(args.results, section)


if __name__ == "__main__":
    main()
