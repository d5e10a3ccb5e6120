"""Every interleaving of gc and push steps (`interleavings.Explorer`): after each schedule, every
manifest a push wrote and returned from is complete in the store.

The real `fscas.gc.collect` and `fscas.commit.commit` run against one in-memory bucket whose every
request is a step; the explorer lands the waiting requests in every order, moves the virtual clock
to every timer, stops a process for longer than a lease once per schedule (SIGSTOP, a VM pause), and
lets a delete land late once per schedule (within the protocol's `window`). Exhaustive up to states
seen before. The default run exhausts two gcs and one push, and one gc and two pushes, without
faults and with a late delete, and samples the rest at random; `FSCAS_MODEL_FULL=1` exhausts every
case, two gcs and two pushes among them (tests/bench/RELIABILITY.md has the numbers).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import interleavings as il
import pytest

from fscas import epoch, keys
from fscas.commit import commit
from fscas.errors import StoreError
from fscas.gc import collect
from fscas.manifests import Manifest, hash_bytes, snapshot
from fscas.store import AsyncStore

LEASE = 2.0
ORPHAN = b"content that an orphan and both pushes hold"


@pytest.fixture
def protocol(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ids the same in every replay, polls at the lease's scale, a settle time past any delete window."""
    monkeypatch.setattr(epoch, "uuid", il.IDS)
    monkeypatch.setattr(epoch, "_POLL", (LEASE / 8, LEASE / 4))
    monkeypatch.setattr(epoch, "SETTLE", 3 * epoch.window(LEASE))
    yield


def _push(root: Path, name: str) -> il.Process:
    (root / name).mkdir()
    (root / name / "f.bin").write_bytes(ORPHAN)
    manifest = snapshot(root / name, hash_cache=False)

    async def push(backend: il.SteppedBackend) -> tuple[str, Manifest]:
        key = f"Manifests/{name}_input"
        await commit(AsyncStore(backend, existence_cache=False), manifest, root / name, key)
        return key, manifest

    return push


async def _gc(backend: il.SteppedBackend) -> Any:
    try:
        return await collect(AsyncStore(backend, existence_cache=False), delete=True, grace_seconds=0, lease=LEASE)
    except StoreError as e:  # a gc that lost its hold stops: allowed, and counted
        return e


class Tally:
    """Checks each schedule and counts what happened."""

    def __init__(self) -> None:
        self.schedules = self.stopped = self.pushed = 0

    def __call__(self, run: il.Run) -> None:
        self.schedules += 1
        for name, outcome in run.outcomes.items():
            if isinstance(outcome, StoreError) and name.startswith("gc"):
                self.stopped += 1
                continue
            if isinstance(outcome, BaseException):
                raise AssertionError(f"{name} raised {outcome!r} in the schedule {run.steps}") from outcome
            if name.startswith("push"):
                key, manifest = outcome
                missing = [p.path for p in manifest.paths if keys.data_key(p.hash) not in run.objects]
                assert key in run.objects and not missing, \
                    f"{name} returned, but its manifest lacks {missing or key}; schedule: {run.steps}"
                self.pushed += 1


def _explorer(tmp_path: Path, gcs: int, pushes: int, *, stops: int, delays: int) -> il.Explorer:
    processes: dict[str, il.Process] = {f"gc_{i}": _gc for i in range(gcs)}
    processes.update({f"push_{i}": _push(tmp_path, f"push_{i}") for i in range(pushes)})
    objects = {keys.EPOCH: b"first-epoch", keys.data_key(hash_bytes(ORPHAN)): ORPHAN}
    return il.Explorer(processes=processes, objects=objects, max_delay=epoch.window(LEASE), stop=1.5 * LEASE,
                       stops=stops, delays=delays)


FULL = os.environ.get("FSCAS_MODEL_FULL") == "1"
CASES = [(gcs, pushes, stops, delays) for gcs, pushes in ((2, 1), (1, 2), *(((2, 2),) if FULL else ()))
         for stops, delays in ((0, 0), (0, 1), *(((1, 0),) if FULL else ()))]


def _id(case: tuple[int, int, int, int]) -> str:
    gcs, pushes, stops, delays = case
    faults = "a process stopped past its lease" if stops else "a delete landing late" if delays else "no faults"
    return f"{gcs} gc, {pushes} push, {faults}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_every_schedule_leaves_every_returned_push_complete(protocol: None, tmp_path: Path,
                                                            case: tuple[int, int, int, int], record: Any) -> None:
    gcs, pushes, stops, delays = case
    explorer = _explorer(tmp_path, gcs, pushes, stops=stops, delays=delays)
    tally = Tally()
    explorer.explore(tally)
    assert tally.schedules > 100 and tally.pushed == tally.schedules * pushes
    record(f"model, every schedule: {_id(case)}", faults=stops + delays, runs=explorer.runs, failures=0, lost=0,
           note=f"{len(explorer.visited)} states, {tally.schedules} complete schedules, a gc stopped in {tally.stopped}")


@pytest.mark.parametrize("gcs, pushes", [(2, 1), (2, 2)])
def test_random_schedules_with_a_stop_and_a_late_delete(protocol: None, tmp_path: Path, gcs: int, pushes: int,
                                                        record: Any) -> None:
    # Exhausted with FSCAS_MODEL_FULL=1 (minutes to hours); sampled here, reproducibly.
    explorer = _explorer(tmp_path, gcs, pushes, stops=1, delays=1)
    tally = Tally()
    explorer.sample(3000, seed=20261204, check=tally)
    assert tally.pushed == pushes * tally.schedules == pushes * 3000
    record(f"model, 3,000 random schedules: {gcs} gc, {pushes} push, a stop and a late delete", faults=2,
           runs=explorer.runs, failures=0, lost=0, note=f"a gc stopped in {tally.stopped}")
