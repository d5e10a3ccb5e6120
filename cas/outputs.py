"""Deadline job outputs: task output manifests written, listed, selected and downloaded as Deadline's
worker and `OutputDownloader` do (docs/reference/deadline-job-attachments.md §3, §5.2, §5.3).

Where the outputs go is decided per asset root, in this order: an explicit destination for the
root; path-mapping rules (each file's absolute path, longest rule, as Deadline maps them); the
local folder of the root's storage-profile location (`file-system-location-name`); the root
itself when the caller allows it. A root that none of these maps is refused, by name, before
anything is written: outputs never land on a foreign absolute path by surprise.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import attrs

from fscas import keys
from fscas.errors import ConfigError, UnsafePathError
from fscas.manifests import GlobFilter, Manifest, ManifestPath, OutputManifest, select_outputs
from fscas.pathmapping import PathMappingRules, join_source, path_format_of
from fscas.paths import check_relative
from fscas.state import SeenState
from fscas.summary import TransferSummary

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from fscas.store import AsyncStore

__all__ = ["DestForRoot", "OutputsSummary", "download_outputs", "output_manifests", "plan_outputs", "put_output",
           "read_output"]

DestForRoot = Mapping[str, "str | os.PathLike[str]"] | Callable[[str], "str | os.PathLike[str] | None"]


async def put_output(store: AsyncStore, manifest: Manifest, root: str | os.PathLike[str], *, farm_id: str,
                     queue_id: str, job_id: str, step_id: str, task_id: str | None, session_action_id: str,
                     start_time: float, source_root: str | None = None, file_system_location_name: str | None = None,
                     callback: Callback | None = None) -> tuple[str, TransferSummary]:
    """Upload a task's outputs from the local folder `root`, then its output manifest with Deadline's metadata.

    The key is Deadline's (`.../<job>/<step>[/<task>]/<ISO µs Z>_<sessionAction>/<xxh128(fsl+root)>_output`)
    and the metadata `asset-root` (plus `asset-root-json` for a non-ASCII root) and
    `file-system-location-name` when given. The asset root recorded is `source_root` (the job's
    root on the submitting machine, as a worker records it), else `root`.

    Returns:
        The output manifest's key and the data transfer summary.
    """
    recorded = source_root if source_root is not None else os.fspath(root)
    key = keys.output_manifest_key(farm_id, queue_id, job_id, step_id, task_id, session_action_id,
                                   start_time, recorded, file_system_location_name)
    _, summary = await store.commit(manifest, root, key, callback=callback,
                                    metadata=keys.output_metadata(recorded, file_system_location_name))
    return key, summary


async def output_manifests(store: AsyncStore, farm_id: str, queue_id: str, job_id: str, step_id: str | None = None,
                           task_id: str | None = None) -> list[OutputManifest]:
    """Every output manifest of a job (or step, or task), with asset root and LastModified."""
    prefix = "/".join([keys.MANIFESTS, farm_id, queue_id, job_id, *(x for x in (step_id, task_id) if x)]) + "/"
    listed = [o async for o in store.backend.list(prefix) if "output" in o.key.rsplit("/", 1)[-1]]
    return list(await asyncio.gather(*(read_output(store, o.key) for o in listed)))


async def read_output(store: AsyncStore, key: str) -> OutputManifest:
    """One output manifest with its asset root, location name and LastModified (a HEAD and a GET)."""
    info = await store.backend.head(key)
    return OutputManifest(key=key, asset_root=keys.asset_root_from_metadata(dict(info.metadata), key),
                          last_modified=datetime.fromtimestamp(info.last_modified or 0, UTC),
                          manifest=await store.get_manifest(key),
                          file_system_location_name=info.metadata.get("file-system-location-name"))


def _dict_of_folders(m: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return dict(m)


@attrs.frozen(kw_only=True)
class OutputsSummary:
    """What `download_outputs` did."""

    manifests: int
    """Output manifests downloaded (after selection, and after `since`)."""
    unchanged: int
    """Selected manifests left out because the state file records them as downloaded."""
    files: int
    bytes: int
    skipped_files: int
    skipped_bytes: int
    destinations: Mapping[str, tuple[str, ...]] = attrs.field(converter=_dict_of_folders, factory=dict)
    """Each source folder and the local folders its files went to: an asset root, or the source of
    the path-mapping rule that mapped its files (so `source/x` lands at `folder/x`, as printed)."""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain fields for `--json`."""
        return {"manifests": self.manifests, "unchanged": self.unchanged, "files": self.files, "bytes": self.bytes,
                "skipped": self.skipped_files, "skipped_bytes": self.skipped_bytes,
                "destinations": {k: list(v) for k, v in self.destinations.items()}, "seconds": round(self.seconds, 3)}


@attrs.frozen(kw_only=True)
class Placement:
    """Files of one destination folder: a manifest relative to it, and the source folders that land
    there (an asset root, or the source of the path-mapping rule that maps part of one)."""

    dest: str
    manifest: Manifest
    roots: tuple[str, ...]


def plan_outputs(outputs: Sequence[OutputManifest], *, dest_for_root: DestForRoot | None = None,
                 path_mapping: PathMappingRules | None = None, file_system_locations: Mapping[str, str] | None = None,
                 original_roots: bool = False) -> list[Placement]:
    """Where every file of `outputs` goes: one placement per destination folder, later manifests
    (by LastModified) winning for the same file, as Deadline merges them.

    Raises:
        ConfigError: roots that nothing maps (all of them named), or two roots putting different
            files at one local path.
        UnsafePathError: a manifest path leaves its root.
    """
    files: dict[str, dict[str, tuple[ManifestPath, str, str]]] = {}
    unmapped: set[str] = set()
    for o in sorted(outputs, key=lambda o: o.last_modified):
        explicit = _explicit(dest_for_root, o.asset_root)
        for p in o.manifest.paths:
            try:  # a path not relative to its root in every OS's syntax refuses the manifest before any mapping
                check_relative(p.path, o.asset_root)
            except UnsafePathError as e:
                raise UnsafePathError(f"{o.key}: {e}") from None
            where = _place(o, p.path, explicit, path_mapping, file_system_locations, original_roots)
            if where is None:
                unmapped.add(o.asset_root)
                continue
            dest, rel, source = where
            earlier = files.setdefault(dest, {}).get(rel)
            if earlier is not None and earlier[1] != o.asset_root and earlier[0].hash != p.hash:
                raise ConfigError(f"{os.path.join(dest, rel)}: outputs of the roots {earlier[1]!r} and "
                                  f"{o.asset_root!r} both land here; map them to different folders")
            files[dest][rel] = (attrs.evolve(p, path=rel), o.asset_root, source)
    if unmapped:
        raise ConfigError(f"no local folder for the asset root(s) {', '.join(sorted(unmapped))}: give --root "
                          "ORIGINAL=LOCAL, path-mapping rules or file-system locations, or --original-roots to write "
                          "to the roots as recorded")
    return [Placement(dest=dest, manifest=Manifest.from_paths(p for p, _, _ in by_rel.values()),
                      roots=tuple(sorted({source for _, _, source in by_rel.values()})))
            for dest, by_rel in files.items()]


def _explicit(dest_for_root: DestForRoot | None, root: str) -> str | None:
    if dest_for_root is None:
        return None
    found = dest_for_root(root) if callable(dest_for_root) else dest_for_root.get(root)
    return None if found is None else os.fspath(found)


def _place(o: OutputManifest, rel: str, explicit: str | None, rules: PathMappingRules | None,
           locations: Mapping[str, str] | None, original_roots: bool) -> tuple[str, str, str] | None:
    """(destination folder, path below it, the source folder that lands at the destination) of one
    output file, or None when nothing maps it. The source is the asset root, or the source of the
    rule that maps it: what `outputs download` prints beside the destination."""
    if explicit is not None:
        return explicit, rel, o.asset_root
    if rules is not None and (found := rules.match(join_source(o.asset_root, rel))) is not None:
        rule, rest = found
        if rest:
            return rule.destination_path, "/".join(rest), rule.source_path
    name = o.file_system_location_name
    if locations and name and name in locations:
        return locations[name], rel, o.asset_root
    if original_roots and os.path.isabs(o.asset_root) and path_format_of(o.asset_root) == _LOCAL_FORMAT:
        return o.asset_root, rel, o.asset_root
    return None


_LOCAL_FORMAT = "WINDOWS" if os.name == "nt" else "POSIX"


async def download_outputs(store: AsyncStore, farm_id: str, queue_id: str, job_id: str, *,
                           step_id: str | None = None, task_id: str | None = None,
                           dest_for_root: DestForRoot | None = None, path_mapping: PathMappingRules | None = None,
                           file_system_locations: Mapping[str, str] | None = None, original_roots: bool = False,
                           keep_earlier_roots: bool = False, since: str | os.PathLike[str] | None = None,
                           conflict: Literal["skip", "overwrite", "create-copy"] = "skip",
                           include: Sequence[str] = (), exclude: Sequence[str] = (),
                           callback: Callback | None = None) -> OutputsSummary:
    """Download a job's (or step's, or task's) outputs, selected as Deadline's `OutputDownloader` does.

    Args:
        dest_for_root: a local folder per asset root (a mapping, or a function returning None for
            roots it does not map); wins over everything else.
        path_mapping: rules applied to each file's absolute path, longest first.
        file_system_locations: local folders by storage-profile location name: a manifest whose
            `file-system-location-name` is here goes there.
        original_roots: write to the roots as recorded when nothing else maps them (same OS only).
        keep_earlier_roots: keep the latest run per task *and root* (Deadline drops roots a rerun
            did not write: defect D4).
        since: a state file: only manifests it does not record (or that changed since) are
            downloaded, and it is rewritten atomically once they are; a missing file means all.
        include, exclude: globs on each file's path below its asset root (as `snapshot` takes
            them): only the files they keep are downloaded. Not with `since`, which records whole
            manifests as downloaded.

    Raises:
        ConfigError: a root nothing maps, a bad state file (or one of another store or job).
    """
    if (include or exclude) and since is not None:
        raise ConfigError("include/exclude and since do not go together: the state file records whole manifests")
    started = time.monotonic()
    selected = select_outputs(await output_manifests(store, farm_id, queue_id, job_id, step_id, task_id),
                              keep_earlier_roots=keep_earlier_roots)
    state = None if since is None else SeenState.load(
        since, _STATE_VERSION, {"store": store.url, "farm_id": farm_id, "queue_id": queue_id, "job_id": job_id},
        "download")
    todo = [o for o in selected if state is None or not state.has(o.key, o.last_modified.timestamp())]
    if include or exclude:
        keep = GlobFilter.from_globs(include, exclude)
        todo = [attrs.evolve(o, manifest=keep.kept(o.manifest)) for o in todo]
    placements = plan_outputs(todo, dest_for_root=dest_for_root, path_mapping=path_mapping,
                              file_system_locations=file_system_locations, original_roots=original_roots)
    summaries = [await store.download(p.manifest, p.dest, conflict=conflict, callback=callback) for p in placements]
    if state is not None:
        state.record((o.key, o.last_modified.timestamp()) for o in todo)
        state.save()
    destinations: dict[str, list[str]] = {}
    for p in placements:
        for root in p.roots:
            destinations.setdefault(root, []).append(p.dest)
    return OutputsSummary(manifests=len(todo), unchanged=len(selected) - len(todo),
                          files=sum(s.files for s in summaries), bytes=sum(s.bytes for s in summaries),
                          skipped_files=sum(s.skipped_files for s in summaries),
                          skipped_bytes=sum(s.skipped_bytes for s in summaries),
                          destinations={k: tuple(v) for k, v in destinations.items()},
                          seconds=time.monotonic() - started)


_STATE_VERSION = "fscas-outputs-state-1"
