"""What a transfer did, as a value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

__all__ = ["GcReport", "ShardRun", "TransferSummary"]


@attrs.frozen(kw_only=True)
class ShardRun:
    """One shard of a distributed run (`fscas.distributed`): where it ran and what it did."""

    index: int
    worker: str
    """The Dask worker's address, or `host:pid` of the process that ran it."""
    files: int
    bytes: int
    seconds: float


def _tuple_of_runs(runs: tuple[ShardRun, ...] | list[ShardRun]) -> tuple[ShardRun, ...]:
    return tuple(runs)


def _tuple_of_str(paths: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(paths)


@attrs.frozen(kw_only=True)
class TransferSummary:
    """Counts and timing of one upload or download."""

    files: int
    """Files transferred (uploaded or written)."""
    bytes: int
    """Bytes transferred."""
    skipped_files: int = 0
    """Files not transferred: content already in the store, or a kept local file."""
    skipped_bytes: int = 0
    unchanged_files: int = 0
    """Downloads: local files already identical to their entry, left alone (part of `skipped_files`)."""
    kept: tuple[str, ...] = attrs.field(factory=tuple, converter=_tuple_of_str)
    """Downloads: local files that differ from their entry and were kept (`conflict="skip"`);
    part of `skipped_files`."""
    seconds: float = 0.0
    workers: int = 1
    """Distinct workers (processes or Dask workers) that did the work."""
    shards: tuple[ShardRun, ...] = attrs.field(factory=tuple, converter=_tuple_of_runs)
    """Per-shard timings of a distributed run (empty on one machine)."""

    @classmethod
    def total(cls, summaries: Sequence[TransferSummary]) -> TransferSummary:
        """Several transfers done one after another, as one: counts, kept files and seconds added."""
        return cls(files=sum(s.files for s in summaries), bytes=sum(s.bytes for s in summaries),
                   skipped_files=sum(s.skipped_files for s in summaries),
                   skipped_bytes=sum(s.skipped_bytes for s in summaries),
                   unchanged_files=sum(s.unchanged_files for s in summaries),
                   kept=tuple(k for s in summaries for k in s.kept), seconds=sum(s.seconds for s in summaries))

    @property
    def rate(self) -> float:
        """Bytes per second transferred."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain fields for `--json` output (Deadline's SummaryStatistics names, plus ours)."""
        out: dict[str, Any] = {"files": self.files, "bytes": self.bytes, "skipped_files": self.skipped_files,
                               "skipped_bytes": self.skipped_bytes, "seconds": round(self.seconds, 3),
                               "rate": round(self.rate, 1), "unchanged_files": self.unchanged_files,
                               "kept": list(self.kept)}
        if self.shards:
            out["workers"] = self.workers
            out["shards"] = [{"index": r.index, "worker": r.worker, "files": r.files, "bytes": r.bytes,
                              "seconds": round(r.seconds, 3)} for r in self.shards]
        return out


@attrs.frozen(kw_only=True)
class GcReport:
    """Data objects no manifest under the store's prefix references."""

    manifests: int
    """Manifests read."""
    referenced: int
    """Distinct digests they reference."""
    unreferenced: tuple[str, ...]
    """Keys of unreferenced Data objects older than the grace period."""
    unreferenced_bytes: int
    deleted: bool
    """Whether the unreferenced objects were deleted."""
    kept_for_grace: int = 0
    """Unreferenced Data objects younger than the grace period: kept (a push may be about to name them)."""
