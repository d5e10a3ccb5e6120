"""fscas: a content-addressed file store over fsspec, wire-compatible with Deadline job attachments."""

from fscas.blocking import Store, open_store
from fscas.errors import (
    AccessDenied,
    ConfigError,
    FscasError,
    IntegrityError,
    ManifestError,
    ObjectExists,
    ObjectNotFound,
    SnapshotError,
    StoreError,
    Unreachable,
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
from fscas.store import AsyncStore, open_async_store
from fscas.summary import GcReport, TransferSummary

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AsyncStore",
    "ConfigError",
    "FscasError",
    "GcReport",
    "IntegrityError",
    "Manifest",
    "ManifestDiff",
    "ManifestError",
    "ManifestPath",
    "ObjectExists",
    "ObjectNotFound",
    "SnapshotError",
    "Store",
    "StoreError",
    "TransferSummary",
    "Unreachable",
    "UnsafePathError",
    "aggregate_outputs",
    "decode",
    "diff",
    "diff_tree",
    "encode",
    "manifest_hash",
    "merge",
    "open_async_store",
    "open_store",
    "snapshot",
]
