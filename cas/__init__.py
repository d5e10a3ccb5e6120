"""fscas: a content-addressed file store over fsspec, wire-compatible with Deadline job attachments."""

from fscas.errors import (
    ConfigError,
    FscasError,
    IntegrityError,
    ManifestError,
    SnapshotError,
    StoreError,
    UnsafePathError,
)
from fscas.manifests import (
    Manifest,
    ManifestDiff,
    ManifestPath,
    aggregate_outputs,
    decode,
    diff,
    diff_tree,
    encode,
    manifest_hash,
    merge,
    snapshot,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "FscasError",
    "IntegrityError",
    "Manifest",
    "ManifestDiff",
    "ManifestError",
    "ManifestPath",
    "SnapshotError",
    "StoreError",
    "UnsafePathError",
    "aggregate_outputs",
    "decode",
    "diff",
    "diff_tree",
    "encode",
    "manifest_hash",
    "merge",
    "snapshot",
]
