"""What a transfer did, as a value."""

from __future__ import annotations

import attrs

__all__ = ["GcReport", "TransferSummary"]


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
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Bytes per second transferred."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """Plain fields for `--json` output (Deadline's SummaryStatistics names, plus ours)."""
        return {"files": self.files, "bytes": self.bytes, "skipped_files": self.skipped_files,
                "skipped_bytes": self.skipped_bytes, "seconds": round(self.seconds, 3),
                "rate": round(self.rate, 1)}


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
