"""fscas: a content-addressed file store over fsspec, wire-compatible with Deadline job attachments."""

from typing import TYPE_CHECKING, Any

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
from fscas.summary import GcReport, TransferSummary

if TYPE_CHECKING:
    from fscas.blocking import Store, open_store
    from fscas.results import PublishedResult, fetch, publish
    from fscas.store import AsyncStore, open_async_store

__version__ = "0.1.0"

# The store pulls in fsspec (0.1-0.2 s of imports): load it on first use, so that `import fscas`
# and the manifest commands of the CLI stay fast.
_LAZY = {"Store": "fscas.blocking", "open_store": "fscas.blocking", "fetch": "fscas.results",
         "PublishedResult": "fscas.results", "publish": "fscas.results", "AsyncStore": "fscas.store",
         "open_async_store": "fscas.store"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fscas' has no attribute {name!r}")

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
