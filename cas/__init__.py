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

if TYPE_CHECKING:
    from fscas.blocking import Store, copy, open_store
    from fscas.copying import CopySummary
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
    from fscas.results import PublishedResult, fetch, publish
    from fscas.store import AsyncStore, open_async_store
    from fscas.summary import GcReport, TransferSummary

__version__ = "0.1.0"

# Names load on first use: the store pulls in fsspec (0.1-0.2 s of imports) and the manifest
# model attrs (0.03 s), and `fscas manifest snapshot` of an unchanged tree needs neither.
_LAZY = {
    **dict.fromkeys(("Store", "copy", "open_store"), "fscas.blocking"),
    "CopySummary": "fscas.copying",
    **dict.fromkeys(("fetch", "PublishedResult", "publish"), "fscas.results"),
    **dict.fromkeys(("AsyncStore", "open_async_store"), "fscas.store"),
    **dict.fromkeys(("GcReport", "TransferSummary"), "fscas.summary"),
    **dict.fromkeys(("Manifest", "ManifestDiff", "ManifestPath", "aggregate_outputs", "decode", "diff", "diff_tree",
                     "encode", "manifest_hash", "merge", "snapshot"), "fscas.manifests"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fscas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AsyncStore",
    "ConfigError",
    "CopySummary",
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
    "copy",
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
