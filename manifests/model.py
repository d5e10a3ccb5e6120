"""The manifest value types (Deadline job-attachments manifest version 2023-03-03)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = ["HASH_ALG", "MANIFEST_VERSION", "Manifest", "ManifestPath"]

#: docs/reference/deadline-job-attachments.md §1.1: the only version and hash algorithm Deadline reads.
MANIFEST_VERSION = "2023-03-03"
HASH_ALG = "xxh128"


@attrs.frozen(slots=True)
class ManifestPath:
    """One file of a manifest.

    Attributes:
        path: POSIX path relative to the manifest root, exactly as written (no normalisation;
            undecodable names carry lone surrogates, as `os.fsdecode` gives them).
        hash: xxh3_128 of the content, 32 lowercase hex characters.
        size: size in bytes.
        mtime: modification time in integer microseconds since the epoch (`st_mtime_ns // 1000`).
    """

    path: str
    hash: str
    size: int
    mtime: int


def _tuple_of_paths(paths: Iterable[ManifestPath]) -> tuple[ManifestPath, ...]:
    return paths if isinstance(paths, tuple) else tuple(paths)


@attrs.frozen(slots=True, kw_only=True)
class Manifest:
    """A set of files under one root.

    `paths` keeps the order it was built with; `encode` writes the canonical order. Decoded
    manifests keep whatever Deadline accepts, including duplicate paths and a `total_size`
    that does not match the sum of sizes.
    """

    paths: tuple[ManifestPath, ...] = attrs.field(converter=_tuple_of_paths)
    total_size: int
    hash_alg: str = HASH_ALG
    version: str = MANIFEST_VERSION

    @classmethod
    def from_paths(cls, paths: Iterable[ManifestPath]) -> Manifest:
        """Build a manifest whose `total_size` is the sum of the sizes of `paths`."""
        ps = tuple(paths)
        return cls(paths=ps, total_size=sum(p.size for p in ps))

    def by_path(self) -> dict[str, ManifestPath]:
        """Map each path to its entry; for a duplicated path the last entry wins."""
        return {p.path: p for p in self.paths}
