"""Merging manifests and Deadline's aggregation of task output manifests."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

import attrs

from fscas.errors import ManifestError
from fscas.manifests.codec import canonical_order
from fscas.manifests.model import Manifest, ManifestPath

__all__ = ["OutputManifest", "aggregate_outputs", "merge", "select_outputs"]

#: download.py `_get_tasks_manifests_keys_from_s3`: the keys that count as output manifests.
_OUTPUT_KEY = re.compile(r"step-.*/.*/.*output.*")


def merge(*manifests: Manifest) -> Manifest:
    """Merge manifests by exact path string; a later manifest wins; total size is recomputed.

    Raises:
        ManifestError: the manifests use different hash algorithms or versions.
    """
    if not manifests:
        raise ManifestError("merge needs at least one manifest")
    first = manifests[0]
    merged: dict[str, ManifestPath] = {}
    for m in manifests:
        if (m.hash_alg, m.version) != (first.hash_alg, first.version):
            raise ManifestError(f"cannot merge hashAlg/manifestVersion {m.hash_alg}/{m.version} "
                                f"with {first.hash_alg}/{first.version}")
        for p in m.paths:
            merged[p.path] = p
    return Manifest.from_paths(canonical_order(list(merged.values())))


@attrs.frozen(kw_only=True)
class OutputManifest:
    """One task output manifest as listed in a store.

    Attributes:
        key: the object key (`.../<job>/<step>/<task>/<ISO>_<sessionAction>/<hash>_output`).
        last_modified: the store's LastModified time of the object.
        asset_root: from the object's `asset-root-json` or `asset-root` metadata.
        manifest: the decoded manifest.
        file_system_location_name: the storage-profile location the root belongs to, if any.
    """

    key: str
    last_modified: datetime
    asset_root: str
    manifest: Manifest
    file_system_location_name: str | None = None


def _task_folder(key: str) -> str | None:
    parts = key.split("/")
    for i, part in enumerate(parts):
        if "task-" in part:
            return "/".join(parts[: i + 1])
    return None


def select_outputs(outputs: Sequence[OutputManifest], *, keep_earlier_roots: bool = False) -> list[OutputManifest]:
    """The output manifests Deadline's download takes (docs/reference/deadline-job-attachments.md §5.2).

    Keys must match `step-.*/.*/.*output.*`; step-level (chunked) manifests are all kept; per task
    folder only the lexicographically greatest `<ISO>_<sessionAction>` folder is, or with
    `keep_earlier_roots` the greatest one per task and asset root (defect D4).
    """
    chosen: list[OutputManifest] = []
    by_task: dict[str, list[OutputManifest]] = defaultdict(list)
    for o in outputs:
        if not _OUTPUT_KEY.search(o.key):
            continue
        folder = _task_folder(o.key)
        if folder is None:
            chosen.append(o)  # step-level (chunked) manifests are all kept
        else:
            by_task[folder].append(o)
    for folder, group in by_task.items():
        depth = len(folder.split("/"))
        def run(o: OutputManifest, depth: int = depth) -> str:
            return o.key.split("/")[depth]
        if not keep_earlier_roots:
            latest = max(run(o) for o in group)  # Deadline: greatest "<ISO>_<sessionAction>" folder
            chosen.extend(o for o in group if run(o) == latest)
            continue
        latest_per_root: dict[str, str] = {}
        for o in group:
            latest_per_root[o.asset_root] = max(latest_per_root.get(o.asset_root, ""), run(o))
        chosen.extend(o for o in group if run(o) == latest_per_root[o.asset_root])
    return chosen


def aggregate_outputs(
    outputs: Iterable[OutputManifest], *, keep_earlier_roots: bool = False
) -> dict[str, Manifest]:
    """Aggregate task output manifests per asset root, as Deadline's job/step/task download does.

    docs/reference/deadline-job-attachments.md §5.2: keys must match `step-.*/.*/.*output.*`; per
    task folder only the lexicographically greatest session-action folder is kept; the kept
    manifests are grouped by asset root and merged oldest `last_modified` first.

    With `keep_earlier_roots=True` the latest run is chosen per task *and asset root*, so a rerun
    that did not write a root no longer discards that root's earlier outputs (defect D4).
    """
    by_root: dict[str, list[OutputManifest]] = defaultdict(list)
    for o in select_outputs(list(outputs), keep_earlier_roots=keep_earlier_roots):
        by_root[o.asset_root].append(o)
    return {root: merge(*(o.manifest for o in sorted(group, key=lambda o: o.last_modified)))
            for root, group in by_root.items()}
