"""Deadline-compatible asset manifests: model, canonical codec, snapshot, diff and merge.

Pure: this package touches the local disk only and imports no cloud SDK.
"""

from fscas.manifests.codec import decode, encode, manifest_hash, sort_key
from fscas.manifests.diff import ManifestDiff, diff, diff_tree
from fscas.manifests.hashcache import HashCache
from fscas.manifests.hashing import EMPTY_HASH, hash_bytes, hash_path
from fscas.manifests.merge import OutputManifest, aggregate_outputs, merge, select_outputs
from fscas.manifests.model import HASH_ALG, MANIFEST_VERSION, Manifest, ManifestPath
from fscas.manifests.snapshotter import Progress, snapshot, snapshot_files
from fscas.manifests.walk import GlobFilter, walk

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
