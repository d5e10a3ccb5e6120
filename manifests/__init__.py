"""Deadline-compatible asset manifests: model, canonical codec, snapshot, diff and merge.

Pure: this package touches the local disk only and imports no cloud SDK. Names load on first use,
so that `fscas.manifests.snapstate` (the warm path of `fscas manifest snapshot`) imports no attrs.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fscas.manifests.changes import ManifestDiff, diff, diff_tree
    from fscas.manifests.codec import decode, encode, manifest_hash, sort_key
    from fscas.manifests.hashcache import HashCache
    from fscas.manifests.hashing import EMPTY_HASH, hash_bytes, hash_path
    from fscas.manifests.merging import OutputManifest, aggregate_outputs, merge, select_outputs
    from fscas.manifests.model import HASH_ALG, MANIFEST_VERSION, Manifest, ManifestPath
    from fscas.manifests.snapshotter import Progress, snapshot, snapshot_files
    from fscas.manifests.walker import GlobFilter, walk

_LAZY = {
    **dict.fromkeys(("decode", "encode", "manifest_hash", "sort_key"), "codec"),
    **dict.fromkeys(("ManifestDiff", "diff", "diff_tree"), "changes"),
    "HashCache": "hashcache",
    **dict.fromkeys(("EMPTY_HASH", "hash_bytes", "hash_path"), "hashing"),
    **dict.fromkeys(("OutputManifest", "aggregate_outputs", "merge", "select_outputs"), "merging"),
    **dict.fromkeys(("HASH_ALG", "MANIFEST_VERSION", "Manifest", "ManifestPath"), "model"),
    **dict.fromkeys(("Progress", "snapshot", "snapshot_files"), "snapshotter"),
    **dict.fromkeys(("GlobFilter", "walk"), "walker"),
}


def __getattr__(name: str) -> Any:
    if (module := _LAZY.get(name)) is None:
        raise AttributeError(f"module 'fscas.manifests' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"fscas.manifests.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "EMPTY_HASH",
    "HASH_ALG",
    "MANIFEST_VERSION",
    "GlobFilter",
    "HashCache",
    "Manifest",
    "ManifestDiff",
    "ManifestPath",
    "OutputManifest",
    "Progress",
    "aggregate_outputs",
    "decode",
    "diff",
    "diff_tree",
    "encode",
    "hash_bytes",
    "hash_path",
    "manifest_hash",
    "merge",
    "select_outputs",
    "snapshot",
    "snapshot_files",
    "sort_key",
    "walk",
]
