"""Reliability scenarios record what they injected and found; the totals print after the run and,
with FSCAS_RELIABILITY_REPORT=path, are written there as the table in tests/bench/RELIABILITY.md."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

ROWS: list[dict[str, Any]] = []


@pytest.fixture
def record() -> Any:
    """`record(scenario, faults=..., runs=..., failures=..., lost=...)` adds a row to the report."""
    def add(scenario: str, *, faults: int, runs: int, failures: int, lost: int, note: str = "") -> None:
        ROWS.append({"scenario": scenario, "faults": faults, "runs": runs, "failures": failures, "lost": lost,
                     "note": note})
    return add


def table() -> str:
    lines = ["| scenario | faults injected | runs | failures surfaced (clear fscas errors) | data lost | note |",
             "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {r['scenario']} | {r['faults']} | {r['runs']} | {r['failures']} | {r['lost']} | {r['note']} |"
              for r in ROWS]
    return "\n".join(lines)


@pytest.fixture(scope="session", autouse=True)
def _report() -> Iterator[None]:
    yield
    if ROWS:
        print("\n" + table())
        if path := os.environ.get("FSCAS_RELIABILITY_REPORT"):
            with open(path, "w") as f:
                f.write(table() + "\n")
