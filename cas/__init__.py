"""fscas: a content-addressed file store over fsspec, wire-compatible with Deadline job attachments."""

from fscas.blocking import Store, open_store
from fscas.errors import (
    ConfigError,
    FscasError,
    IntegrityError,
    ManifestError,
    ObjectNotFound,
    SnapshotError,
    StoreError,
    UnsafePathError,
)
from fscas.fetch import fetch
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
from fscas.publish import PublishedResult, publish
from fscas.store import AsyncStore, open_async_store
from fscas.summary import GcReport, TransferSummary

__version__ = "0.1.0"

__all__ = [
    "AsyncStore",
    "ConfigError",
    "FscasError",
    "GcReport",
    "IntegrityError",
    "Manifest",
    "ManifestDiff",
    "ManifestError",
    "ManifestPath",
    "ObjectNotFound",
    "PublishedResult",
    "SnapshotError",
    "Store",
    "StoreError",
    "TransferSummary",
    "UnsafePathError",
    "aggregate_outputs",
    "decode",
    "diff",
    "diff_tree",
    "encode",
    "fetch",
    "manifest_hash",
    "merge",
    "open_async_store",
    "open_store",
    "publish",
    "snapshot",
]
