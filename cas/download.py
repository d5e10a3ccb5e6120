"""Materialise a manifest into a folder the way `rsync -t` and `aws s3 sync` users expect.

A local file that already matches its manifest entry (same size and mtime, or same hash with
`checksum=True`) is left alone and counted as unchanged. Only a file that *differs* is subject to
the conflict mode: kept and reported by name (`skip`), replaced (`overwrite`), or the download goes
beside it as `name (1).ext` (`create-copy`, Deadline's CREATE_COPY).
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fscas.errors import ObjectNotFound
from fscas.fetching import fetch_to_file, prepare_parent, reserve_copy_name
from fscas.files import remove_stale_temps
from fscas.manifests import Manifest, ManifestPath
from fscas.manifests.hashing import hash_path
from fscas.paths import check_folder_target, check_layout, safe_path
from fscas.summary import TransferSummary
from fscas.transfer import PART, files_done_of, in_lanes, progress_of

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from fscas.store import AsyncStore

__all__ = ["ConflictMode", "download"]

ConflictMode = Literal["skip", "overwrite", "create-copy"]
_BIG = 2  # files larger than one part transferred at once (each holds a few parts in memory)


def _state(p: ManifestPath, target: str, checksum: bool) -> Literal["new", "same", "differs"]:
    """How the local file at `target` compares with its manifest entry (runs on a worker thread)."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return "new"
    if not stat.S_ISREG(st.st_mode) or st.st_size != p.size:
        return "differs"
    if not checksum:
        return "same" if st.st_mtime_ns // 1000 == p.mtime else "differs"
    try:
        return "same" if hash_path(target, follow_symlinks=False).hash == p.hash else "differs"
    except OSError:  # unreadable: treat as different, the conflict mode decides
        return "differs"


async def download(store: AsyncStore, manifest: Manifest, dest: str | os.PathLike[str], *,
                   conflict: ConflictMode = "skip", checksum: bool = False,
                   callback: Callback | None = None, dry_run: bool = False) -> TransferSummary:
    """See `fscas.AsyncStore.download`."""
    if conflict not in ("skip", "overwrite", "create-copy"):
        raise ValueError(f"conflict must be skip, overwrite or create-copy, not {conflict!r}")
    started = time.monotonic()
    dest_s = os.fspath(dest)
    targets = [(p, safe_path(dest_s, p.path)) for p in manifest.paths]  # strings: pathlib costs µs per file
    check_layout(p.path for p in manifest.paths)
    check_folder_target(Path(dest_s))
    if not dry_run:
        os.makedirs(dest_s, exist_ok=True)
        for folder in {os.path.dirname(t) for _, t in targets}:  # what a killed earlier download left behind
            if os.path.isdir(folder):
                remove_stale_temps(folder)
    dest_real = os.path.realpath(dest_s)

    if checksum:  # hashing: on worker threads, a bounded number at a time
        states: list[str] = [""] * len(targets)

        async def compare(i: int) -> None:
            states[i] = await asyncio.to_thread(_state, *targets[i], True)

        await in_lanes(compare, (range(len(targets)), max(4, store.concurrency)))
    else:  # a stat each: cheaper inline than a thread hop
        states = [_state(p, t, False) for p, t in targets]
    unchanged = 0
    kept: list[str] = []
    plan: list[tuple[ManifestPath, str]] = []
    for (p, target), state in zip(targets, states, strict=True):
        if state == "same":
            unchanged += 1
        elif state == "differs" and conflict == "skip":
            kept.append(p.path)
        else:
            plan.append((p, target))
    total = sum(p.size for p, _ in plan)

    def summary() -> TransferSummary:
        return TransferSummary(files=len(plan), bytes=total, skipped_files=len(targets) - len(plan),
                               skipped_bytes=manifest.total_size - total, unchanged_files=unchanged,
                               kept=tuple(kept), seconds=time.monotonic() - started)
    if dry_run:
        return summary()
    progress = progress_of(callback, total)
    file_done = files_done_of(callback, len(plan))

    prepared: set[str] = set()  # folders made and checked once per download, not once per file

    def place(target: str) -> str | Path:  # on a worker thread, right before the write
        folder = os.path.dirname(target)
        if folder not in prepared:
            prepare_parent(target, dest_real)
            prepared.add(folder)
        if conflict == "create-copy" and os.path.lexists(target):
            return reserve_copy_name(target)
        return target

    async def one(item: tuple[ManifestPath, str]) -> None:
        p, target = item
        try:
            await fetch_to_file(store.backend, p.hash, p.size, lambda: place(target), mtime_us=p.mtime,
                                progress=progress)
        except ObjectNotFound as e:
            raise ObjectNotFound(f"{p.path}: {e}") from None
        file_done()

    await in_lanes(one, ([x for x in plan if x[0].size <= PART], store.concurrency),
                   ([x for x in plan if x[0].size > PART], _BIG))  # large files in flight: bounds memory
    return summary()

