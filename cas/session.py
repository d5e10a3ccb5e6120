"""The worker's half of job attachments, as Deadline's worker agent does it around every task
(`AssetSync.sync_inputs` before, `AssetSync.sync_outputs` after), for any scheduler that runs a
command per task.

`start` materialises each asset root of a job's attachments document in the session folder
(`assetroot-<hash>` per root, or the folder a storage-profile location maps it to), the job's input
manifests merged per root with the outputs of the steps it depends on laid over them, every file
verified and with its recorded mtime; it returns Deadline's path-mapping rules for the task command.
`finish` uploads what the task wrote under each root's output folders (new files, and files changed
since `start` put them there) and writes one output manifest per root under Deadline's key with
Deadline's metadata, data before manifest.

What `start` put in place is remembered outside the session folder (the session tree stays exactly
Deadline's): `<cache>/sessions/<hash of the folder>.json`, written once everything is in place, so
a `finish` never mistakes a half-materialised input for a task's output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from fscas.attachments import AttachmentRoot, Attachments, dest_dir_name
from fscas.errors import ConfigError, IntegrityError, ManifestError, ObjectNotFound
from fscas.files import atomic_write_bytes
from fscas.manifests import Manifest, aggregate_outputs, decode, manifest_hash, merge, snapshot_files
from fscas.outputs import output_manifests, put_output
from fscas.pathmapping import FileSystemLocation
from fscas.summary import TransferSummary

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from fscas.store import AsyncStore

__all__ = ["SessionInputs", "SessionOutputs", "finish", "start"]

RULES_VERSION = "pathmapping-1.0"


@attrs.frozen(kw_only=True)
class SessionInputs:
    """What `start` put in place."""

    roots: Mapping[str, str]
    """Asset root (as the job recorded it) -> local folder."""
    rules: tuple[Mapping[str, str], ...]
    """Deadline's path-mapping rules for the roots placed in the session folder, as `sync_inputs`
    returns them (`source_path_format` in its enum's lowercase values, `posix`/`windows`)."""
    manifests: int
    """Input and step-dependency manifests merged."""
    summary: TransferSummary
    shared: tuple[str, ...] = ()
    """Roots left in place: their storage-profile location is SHARED."""

    def rules_document(self) -> dict[str, Any]:
        """The rules as Deadline's path-mapping JSON (`{"version": "pathmapping-1.0", ...}`)."""
        return {"version": RULES_VERSION, "path_mapping_rules": [dict(r) for r in self.rules]}


@attrs.frozen(kw_only=True)
class SessionOutputs:
    """What `finish` uploaded: one output manifest per root that has outputs."""

    keys: tuple[str, ...]
    files: int
    """Output files found (new or changed since `start`)."""
    bytes: int
    summary: TransferSummary


def _mapped(root: AttachmentRoot, where: str, session_dir: str,
            locations: Mapping[str, FileSystemLocation]) -> tuple[str, FileSystemLocation | None]:
    """(local folder, its storage-profile location or None) of one root, as `sync_inputs` maps it:
    a root with a location name goes to that location's folder once locations are given at all."""
    name = root.file_system_location_name
    if locations and name:
        if name not in locations:
            raise ConfigError(f"{where}.fileSystemLocationName: no --file-system-location named {name!r} "
                              f"(given: {', '.join(sorted(locations))})")
        return locations[name].path, locations[name]
    return os.path.join(session_dir, dest_dir_name(root.root_path)), None


def _record_path(session_dir: str) -> str:
    from fscas.manifests.cachedir import default_cache_dir

    digest = hashlib.sha256(os.path.realpath(session_dir).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return os.path.join(default_cache_dir(), "sessions", f"{digest}.json")


def _load_record(session_dir: str) -> tuple[dict[str, int] | None, list[dict[str, Any]]]:
    """What `start` recorded, read once: each input file's mtime (None: no record of this session)
    and the VIRTUAL roots it mounted (mountpoint, server pid)."""
    try:
        with open(_record_path(session_dir), encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None, []
    if not isinstance(doc, dict) or doc.get("session_dir") != os.path.realpath(session_dir):
        return None, []
    mounts = doc.get("mounts")
    mounted = [m for m in mounts if isinstance(m, dict)] if isinstance(mounts, list) else []
    synced = doc.get("synced")
    if not isinstance(synced, dict):
        return None, mounted
    return {str(k): int(v) for k, v in synced.items() if isinstance(v, int)}, mounted


def _save_record(session_dir: str, synced: Mapping[str, int], mounts: Sequence[Mapping[str, Any]] = ()) -> None:
    path = _record_path(session_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    doc = {"session_dir": os.path.realpath(session_dir), "synced": dict(synced), "mounts": [dict(m) for m in mounts]}
    atomic_write_bytes(path, json.dumps(doc).encode(), durable=False)


async def start(store: AsyncStore, attachments: Attachments, session_dir: str | os.PathLike[str], *,
                farm_id: str, queue_id: str, job_id: str, step_dependencies: Sequence[str] = (),
                locations: Iterable[FileSystemLocation] = (), group: str | None = None, vfs: bool = False,
                callback: Callback | None = None) -> SessionInputs:
    """Materialise a job's inputs in `session_dir`, as Deadline's `AssetSync.sync_inputs` does.

    Args:
        locations: the worker's storage-profile locations; a root whose `fileSystemLocationName`
            names one goes to its folder (a SHARED one is left in place, nothing downloaded).
        step_dependencies: steps whose outputs are laid over the inputs (latest run per task,
            merged oldest first, in `session_dir` under each output root's `assetroot-` folder).
        group: make what is written readable and writable by this group (Deadline's
            `FileSystemPermissionSettings` for the job user).
        vfs: mount each root lazily instead of downloading it (Deadline's VIRTUAL file system,
            also chosen by the document's `"fileSystem": "VIRTUAL"`; `fscas.vfs`): a file is
            fetched on its first read, what the task writes goes to a local layer; `finish` unmounts.

    Raises:
        ConfigError: a location name with no location, a mapped root that is a file, a step
            without outputs, not enough disk space.
        ManifestError: an input manifest missing or not matching `inputManifestHash` (key named).
    """
    session = os.path.abspath(os.fspath(session_dir))
    vfs = vfs or attachments.file_system == "VIRTUAL"
    if vfs and group is not None:
        raise ConfigError("--group does not apply to a VIRTUAL session: its files are served by the worker "
                          "user's mount; run the task as that user")
    by_name = {loc.name: loc for loc in locations}
    gid = _group_id(group) if group is not None else None
    grouped: dict[str, list[Manifest]] = {}
    roots: dict[str, str] = {}
    rules: list[dict[str, str]] = []
    shared: list[str] = []
    count = 0
    for i, root in enumerate(attachments.manifests):
        where = f"attachments: manifests[{i}]"
        local, location = _mapped(root, where, session, by_name)
        if location is not None and location.type == "SHARED":
            shared.append(root.root_path)  # on shared storage: the task reads it where it is
            continue
        if os.path.lexists(local) and not os.path.isdir(local):
            raise ConfigError(f"{where}.rootPath: {root.root_path!r} maps to {local}, which is a file")
        roots[root.root_path] = local
        if location is None:
            rules.append({"source_path_format": root.root_path_format.lower(), "source_path": root.root_path,
                          "destination_path": local})
        if root.input_manifest_key is not None:
            grouped.setdefault(local, []).append(await _input_manifest(store, root, where))
            count += 1
    for step in step_dependencies:
        found = await output_manifests(store, farm_id, queue_id, job_id, step)
        outputs = aggregate_outputs(found)  # Deadline's: only step-*/…/…output… keys, a task's latest run
        if not outputs:
            raise ConfigError(f"--step-dependency {step}: the step has no outputs (nothing under "
                              f"Manifests/{farm_id}/{queue_id}/{job_id}/{step}/ that Deadline reads: step ids "
                              "start with 'step-')")
        count += len(found)
        for asset_root, m in outputs.items():  # Deadline: always in the session folder
            local = os.path.join(session, dest_dir_name(asset_root))
            roots.setdefault(asset_root, local)
            grouped.setdefault(local, []).append(m)
    merged = {local: merge(*ms) for local, ms in grouped.items()}
    os.makedirs(session, exist_ok=True)
    recorded, mounted = _load_record(session)
    synced = recorded or {}  # a later task of the same session: earlier outputs stay known
    if vfs:
        mounts = await _mount_roots(store, session, merged)
        for local, m in merged.items():
            synced.update((os.path.join(local, *p.path.split("/")), p.mtime * 1000) for p in m.paths)
        _save_record(session, synced, [*mounted, *mounts])
        return SessionInputs(roots=roots, rules=tuple(rules), manifests=count, shared=tuple(shared),
                             summary=TransferSummary(files=0, bytes=0, skipped_files=sum(len(m.paths) for m in
                                                                                         merged.values())))
    _check_space(session, sum(m.total_size for m in merged.values()))
    summaries = [await store.download(m, local, conflict="overwrite", callback=callback)
                 for local, m in merged.items()]
    for local, m in merged.items():
        paths = [os.path.join(local, *p.path.split("/")) for p in m.paths]
        synced.update((path, os.lstat(path).st_mtime_ns) for path in paths)
        if gid is not None:
            _share_with_group(local, paths, gid)
    _save_record(session, synced, mounted)  # last: only a complete start is remembered
    return SessionInputs(roots=roots, rules=tuple(rules), manifests=count, summary=TransferSummary.total(summaries),
                         shared=tuple(shared))


async def _mount_roots(store: AsyncStore, session: str, merged: Mapping[str, Manifest]) -> list[dict[str, Any]]:
    """Mount each root's merged manifest at its folder (`fscas.vfs_server`); on a failure, unmount the
    ones already up, so nothing half-mounted is left for a rerun to trust."""
    import asyncio

    from fscas.vfs_server import mount_overlay, unmount

    work = os.path.splitext(_record_path(session))[0] + "-vfs"
    mounts: list[dict[str, Any]] = []
    try:
        for n, (local, m) in enumerate(merged.items()):
            pid = await asyncio.to_thread(mount_overlay, store, m, local, os.path.join(work, str(n)))
            mounts.append({"mountpoint": local, "pid": pid})
    except BaseException:
        for mount in mounts:
            await asyncio.to_thread(unmount, mount["mountpoint"], mount["pid"])
        raise
    return mounts


async def _input_manifest(store: AsyncStore, root: AttachmentRoot, where: str) -> Manifest:
    key = root.input_manifest_key
    assert key is not None
    try:
        data = await store.backend.get(key)
    except ObjectNotFound:
        raise ManifestError(f"{where}.inputManifestPath: {key} is not in the store") from None
    if root.input_manifest_hash is not None and manifest_hash(data) != root.input_manifest_hash:
        raise IntegrityError(f"{where}.inputManifestHash: {key} hashes to {manifest_hash(data)}, "
                             f"not {root.input_manifest_hash}")
    try:
        return decode(data)
    except ManifestError as e:
        raise ManifestError(f"{where}.inputManifestPath: {key}: {e}") from None


def _check_space(session: str, needed: int) -> None:
    folder = session
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise ConfigError(f"{session}: the inputs need {needed} bytes; {free} are free")


def _group_id(group: str) -> int:
    import grp  # POSIX only: Windows has ACLs, which --group does not set

    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"--group {group!r}: no such group") from None


def _share_with_group(local: str, files: Iterable[str], gid: int) -> None:
    """chgrp, and group read/write (and search on folders), as Deadline sets them for the job user."""
    folders = {local}
    for path in files:
        os.chown(path, -1, gid, follow_symlinks=False)
        os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | 0o060)
        parent = os.path.dirname(path)
        while parent.startswith(local) and parent not in folders:
            folders.add(parent)
            parent = os.path.dirname(parent)
    for folder in folders:
        os.chown(folder, -1, gid)
        os.chmod(folder, stat.S_IMODE(os.stat(folder).st_mode) | 0o070)


async def finish(store: AsyncStore, attachments: Attachments, session_dir: str | os.PathLike[str], *,
                 farm_id: str, queue_id: str, job_id: str, step_id: str, task_id: str | None,
                 session_action_id: str, start_time: float, locations: Iterable[FileSystemLocation] = (),
                 callback: Callback | None = None) -> SessionOutputs:
    """Upload a task's outputs and write its output manifests, as Deadline's `AssetSync.sync_outputs`.

    A file under a root's `outputRelativeDirectories` is an output when `start` did not put it
    there, or it changed since (mtime); without a record of `start`, when it changed at or after
    `start_time`. Files that resolve outside the session folder (or the location's folder) are
    left out. Nothing changed: nothing written.
    """
    session = os.path.abspath(os.fspath(session_dir))
    by_name = {loc.name: loc for loc in locations}
    record, mounts = _load_record(session)
    synced = dict(record or {})
    since_ns = int(start_time * 1e9)
    keys: list[str] = []
    summaries: list[TransferSummary] = []
    files = size = 0
    for i, root in enumerate(attachments.manifests):
        local, location = _mapped(root, f"attachments: manifests[{i}]", session, by_name)
        boundary = os.path.realpath(local if location is not None else session)
        rels: list[str] = []
        for parts in root.output_dirs():
            folder = os.path.join(local, *parts)
            if not os.path.isdir(folder):
                continue  # not written (yet): another task may make it
            for path, st in _files_under(folder, boundary):
                before = synced.get(path)
                if before is None:
                    if record is None and st.st_mtime_ns < since_ns:
                        continue
                    synced[path] = st.st_mtime_ns  # new: as Deadline, later tasks skip it unless it changes
                elif st.st_mtime_ns <= before:
                    continue
                rels.append(os.path.relpath(path, local).replace(os.sep, "/"))
        if not rels:
            continue
        manifest = snapshot_files(local, sorted(set(rels)), hash_cache=False)  # one gone meanwhile: skipped
        key, summary = await put_output(store, manifest, local, farm_id=farm_id, queue_id=queue_id, job_id=job_id,
                                        step_id=step_id, task_id=task_id, session_action_id=session_action_id,
                                        start_time=start_time, source_root=root.root_path,
                                        file_system_location_name=root.file_system_location_name, callback=callback)
        keys.append(key)
        summaries.append(summary)
        files += len(manifest.paths)
        size += manifest.total_size
    if mounts:  # VIRTUAL roots: unmounted once their outputs are up, as Deadline's worker does
        import asyncio

        from fscas.vfs_server import unmount

        for mount in mounts:
            await asyncio.to_thread(unmount, mount["mountpoint"], mount.get("pid"))
    if (record is not None and synced != record) or mounts:
        _save_record(session, synced)
    return SessionOutputs(keys=tuple(keys), files=files, bytes=size, summary=TransferSummary.total(summaries))


def _files_under(folder: str, boundary: str) -> Iterable[tuple[str, os.stat_result]]:
    """Regular files below `folder` whose real path is inside `boundary` (a link out is left out)."""
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            real = os.path.realpath(path)
            if os.path.commonpath([real, boundary]) != boundary:
                continue
            st = os.stat(path)
            if stat.S_ISREG(st.st_mode):
                yield path, st

