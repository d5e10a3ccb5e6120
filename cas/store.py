"""The content-addressed store: Deadline's key layout over any backend, verified both ways."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from fscas import keys
from fscas.backends import Backend, open_backend
from fscas.download import ConflictMode
from fscas.errors import ConfigError, IntegrityError, ManifestError, ObjectNotFound
from fscas.existence import ExistenceCache
from fscas.fetching import fetch_to_file
from fscas.manifests import Manifest, OutputManifest, decode, encode, hash_bytes, manifest_hash
from fscas.paths import safe_path
from fscas.summary import GcReport, TransferSummary
from fscas.transfer import PART, files_done_of, in_lanes, progress_of, send_file
from fscas.verify import VerifyReport, verify_objects

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from fscas.attachments import Attachments
    from fscas.copying import CopySummary
    from fscas.listing import ManifestKind, StoredManifest
    from fscas.manifests.walker import SkipHandler
    from fscas.outputs import OutputsSummary
    from fscas.outputs_sync import QueueSyncSummary
    from fscas.session import SessionInputs, SessionOutputs

__all__ = ["AsyncStore", "ConflictMode", "open_async_store"]

_BIG = 2  # files larger than one part transferred at once (each holds a few parts in memory)
_HEAD_OR_LIST = 16  # fewer missing candidates than this: HEAD each; more: consider listing Data/


class AsyncStore:
    """A content-addressed store over one backend. Use it as an async context manager.

    Args:
        backend: where the bytes live (see `fscas.backends.open_backend`).
        concurrency: transfers in flight at once.
        existence_cache: the cache of keys seen present; False for none (ask the server every time).
    """

    def __init__(self, backend: Backend, *, concurrency: int = 32,
                 existence_cache: ExistenceCache | Literal[False] | None = None) -> None:
        self.backend = backend
        self.concurrency = concurrency
        self._cache = None if existence_cache is False else existence_cache or ExistenceCache()
        self._owns_cache = existence_cache is None  # a cache passed in may serve other stores too
        self.opened_with: tuple[str, dict[str, Any]] | None = None
        """(URL or folder, keywords) it was opened with by `open_async_store`, to open it again in
        another process (`fscas://` pickled for Dask); None when made from a backend or a filesystem."""

    @property
    def url(self) -> str:
        """The backend's credential-free URL; also the store identity the existence cache uses."""
        return self.backend.url

    @property
    def existence_cache(self) -> ExistenceCache | None:
        """The cache of Data keys seen present, or None when the store asks the server every time."""
        return self._cache

    def __repr__(self) -> str:
        return f"AsyncStore({self.url!r})"

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backend's sessions and the cache."""
        await self.backend.aclose()
        if self._cache is not None and self._owns_cache:
            self._cache.close()

    # -- objects by digest -------------------------------------------------------------------

    async def has(self, digest: str) -> bool:
        """True when the server holds `Data/<digest>.xxh128`; errors other than not-found propagate."""
        try:
            await self.backend.head(keys.data_key(digest))
        except ObjectNotFound:
            return False
        return True

    async def put_bytes(self, data: bytes) -> str:
        """Store `data` under its digest (unless present) and return the digest."""
        digest = hash_bytes(data)
        if not await self.has(digest):
            await self.backend.put(keys.data_key(digest), data)
        self._remember([keys.data_key(digest)])
        return digest

    async def put_file(self, path: str | os.PathLike[str]) -> str:
        """Store a local file under its digest, hashing while reading; return the digest."""
        from fscas.manifests import hash_path

        p = Path(path)
        d = await asyncio.to_thread(hash_path, p)
        if not await self.has(d.hash):
            await send_file(self.backend, p, os.path.realpath(p.parent), d.hash, d.size, lambda n: None)
        self._remember([keys.data_key(d.hash)])
        return d.hash

    async def get_bytes(self, digest: str) -> bytes:
        """The content stored under `digest`, verified.

        Raises:
            ObjectNotFound: neither `Data/<digest>.xxh128` nor `Data/<digest>` exists.
            IntegrityError: the stored bytes do not hash to `digest` (the key is named).
        """
        key = keys.data_key(digest)
        try:
            data = await self.backend.get(key)
        except ObjectNotFound:
            key = keys.legacy_data_key(digest)
            data = await self.backend.get(key)
        if hash_bytes(data) != digest:
            raise IntegrityError(f"{self.url}: {key}: bytes hash to {hash_bytes(data)}, not {digest}")
        return data

    async def get_file(self, digest: str, path: str | os.PathLike[str], *, size: int | None = None) -> None:
        """Write the content under `digest` to `path`, verified, through a temp file and rename."""
        target = Path(path)
        if size is None:
            size = await self._size(digest)
        await fetch_to_file(self.backend, digest, size, lambda: target, mtime_us=None, progress=lambda n: None)

    async def open(self, digest: str) -> BinaryIO:
        """A verified read-only file object holding the content under `digest` (spooled to disk past 16 MiB)."""
        size = await self._size(digest)
        with tempfile.TemporaryDirectory(prefix="fscas-open-") as folder:
            target = Path(folder) / digest
            await fetch_to_file(self.backend, digest, size, lambda: target, mtime_us=None, progress=lambda n: None)
            return open(target, "rb")  # unlinked with its folder; the open handle keeps the bytes

    async def _size(self, digest: str) -> int:
        try:
            return (await self.backend.head(keys.data_key(digest))).size
        except ObjectNotFound:
            return (await self.backend.head(keys.legacy_data_key(digest))).size

    # -- existence ---------------------------------------------------------------------------

    def _remember(self, data_keys: Iterable[str]) -> None:
        if self._cache is not None:
            self._cache.add(self.url, data_keys)

    def forget(self, data_keys: Iterable[str] | None = None) -> None:
        """Drop keys (all of this store's, when None) from the existence cache."""
        if self._cache is not None:
            self._cache.forget(self.url, data_keys)

    async def missing(self, digests: Iterable[str], *, use_cache: bool = True) -> set[str]:
        """The digests whose Data objects the store does not hold.

        Answers from the existence cache where it can; otherwise HEADs each key, or lists `Data/`
        when the store looks small enough that a listing costs fewer requests (dvc-objects' rule).
        """
        want = {keys.data_key(d): d for d in digests}
        if use_cache and self._cache is not None:
            for key in self._cache.present(self.url) & want.keys():
                del want[key]
        if not want:
            return set()
        if len(want) >= _HEAD_OR_LIST and await self._listing_is_cheaper(len(want)):
            present = {o.key async for o in self.backend.list(keys.DATA + "/")} & want.keys()
        else:
            present = set(await self.present(list(want)))
        self._remember(present)
        return {d for k, d in want.items() if k not in present}

    async def _listing_is_cheaper(self, candidates: int) -> bool:
        from fscas.listing import estimated_data_pages

        return await estimated_data_pages(self.backend) < candidates

    async def present(self, data_keys: list[str]) -> list[str]:
        """The keys among `data_keys` the server holds (one HEAD each; the cache is not asked)."""
        slots = asyncio.Semaphore(self.concurrency)

        async def present(key: str) -> str | None:
            async with slots:
                try:
                    await self.backend.head(key)
                except ObjectNotFound:
                    return None
                return key

        return [k for k in await asyncio.gather(*(present(k) for k in data_keys)) if k is not None]

    # -- manifests of files ------------------------------------------------------------------

    async def upload(self, manifest: Manifest, root: str | os.PathLike[str], *, callback: Callback | None = None,
                     use_cache: bool = True, check_cache: bool = True) -> TransferSummary:
        """Upload the files of `manifest` (relative to `root`) that the store does not hold yet.

        Each file is hashed while it is read and stored only if it still matches its manifest
        entry; only confirmed objects enter the existence cache. With `check_cache`, a random
        sample of what the existence cache answered for is asked about (HEAD) afterwards; if any is
        gone (the store emptied or recreated by hand, a lifecycle rule), the store's entries are
        dropped and every object is asked about again. `commit` passes False: it checks once itself.

        Raises:
            IntegrityError: a file changed since its snapshot (size or content).
            UnsafePathError: a manifest path leaves `root`, or resolves outside it through a link.
            SnapshotError: a file is missing or unreadable.
        """
        if use_cache and check_cache and self._cache is not None:
            from fscas.commit import upload_checked

            return await upload_checked(self, {p.hash for p in manifest.paths}, lambda cached, cb: self.upload(
                manifest, root, callback=cb, use_cache=cached, check_cache=False), callback, confirmed=())
        started = time.monotonic()
        root_s = os.fspath(root)
        root_real = os.path.realpath(root_s)
        first: dict[str, tuple[str, int]] = {}  # digest -> (the first file with it, its size)
        for p in manifest.paths:
            path = safe_path(root_s, p.path)
            first.setdefault(p.hash, (path, p.size))
        todo = await self.missing(first, use_cache=use_cache)
        total = sum(first[d][1] for d in todo)
        progress = progress_of(callback, total)
        file_done = files_done_of(callback, len(todo))
        done: list[str] = []

        async def one(digest: str) -> None:
            path, size = first[digest]
            await send_file(self.backend, path, root_real, digest, size, progress)
            done.append(keys.data_key(digest))
            file_done()

        try:  # big files first within their lane: better packing
            order = sorted(todo, key=lambda d: -first[d][1])
            await in_lanes(one, ([d for d in order if first[d][1] <= PART], self.concurrency),
                           ([d for d in order if first[d][1] > PART], _BIG))
        finally:
            self._remember(done)
        skipped = len(manifest.paths) - len(todo)
        return TransferSummary(files=len(todo), bytes=total, skipped_files=skipped,
                               skipped_bytes=manifest.total_size - total, seconds=time.monotonic() - started)

    async def download(self, manifest: Manifest, dest: str | os.PathLike[str], *, conflict: ConflictMode = "skip",
                       checksum: bool = False, callback: Callback | None = None,
                       dry_run: bool = False) -> TransferSummary:
        """Materialise `manifest` under `dest`: parallel, verified, one temp file + rename per file.

        Every path is checked before anything is written: absolute paths, `..`, backslashes, NUL,
        duplicates and file/folder clashes are refused, as is any folder that resolves out of
        `dest` through a link. mtimes are restored from the manifest.

        A local file that already matches its entry (size and mtime; size and hash with
        `checksum`) is left alone and counted in `unchanged_files`. Only a file that differs is
        subject to `conflict`.

        Args:
            conflict: a differing local file is kept and named in the summary's `kept` (`skip`),
                replaced (`overwrite`), or the download goes to `name (1).ext` (`create-copy`).
            checksum: compare local files by hash instead of mtime (slower; for trees whose
                mtimes are not trustworthy).
            dry_run: decide what would be written (the summary's `files`/`bytes`, `kept`,
                `unchanged_files`) and write nothing, not even `dest`.

        Raises:
            UnsafePathError: a path would land outside `dest`.
            IntegrityError: an object's size or digest is wrong (its key is named).
            ObjectNotFound: an object is missing from the store (the file's path is named).
        """
        from fscas.download import download

        return await download(self, manifest, dest, conflict=conflict, checksum=checksum, callback=callback,
                              dry_run=dry_run)

    # -- manifest objects --------------------------------------------------------------------

    async def manifests(self, *, kind: ManifestKind | None = None, farm_id: str | None = None,
                        queue_id: str | None = None) -> list[StoredManifest]:
        """The manifest objects under the store, listed, not read: `kind="input"` gives the input
        manifests (`Manifests/<farm>/<queue>/Inputs/...`), `"output"` the job outputs."""
        from fscas.listing import list_manifests

        return [m async for m in list_manifests(self.backend, kind=kind, farm_id=farm_id, queue_id=queue_id)]

    async def put_manifest(self, key: str, manifest: Manifest, *, metadata: dict[str, str] | None = None,
                           if_absent: bool = True) -> str:
        """Write a manifest object (create-only by default) and return its manifest hash."""
        data = encode(manifest)
        await self.backend.put(key, data, metadata=metadata, if_absent=if_absent)
        return manifest_hash(data)

    async def get_manifest(self, key: str) -> Manifest:
        """Read and decode the manifest object at `key`.

        Raises:
            ManifestError: the object is not a valid manifest (the message names the key).
        """
        data = await self.backend.get(key)
        try:
            return decode(data)
        except ManifestError as e:
            raise ManifestError(f"{self.url}: {key}: {e}") from None

    async def push(self, manifest: Manifest, root: str | os.PathLike[str], *, farm_id: str, queue_id: str,
                   source_root: str | None = None, metadata: dict[str, str] | None = None,
                   callback: Callback | None = None) -> tuple[str, str, TransferSummary]:
        """Upload the data, then (only then: Deadline defect D3) the input manifest.

        `metadata` goes on the manifest object (Deadline writes none on input manifests; fscas adds
        `file-system-location-name` for a root under a LOCAL storage-profile location).

        Returns:
            The input manifest's key, its manifest hash, and the data transfer summary.
        """
        key = keys.input_manifest_key(farm_id, queue_id, source_root or os.path.abspath(root))
        digest, summary = await self.commit(manifest, root, key, metadata=metadata, callback=callback)
        return key, digest, summary

    async def push_folder(self, root: str | os.PathLike[str], *, farm_id: str, queue_id: str,
                          include: Sequence[str] = (), exclude: Sequence[str] = (), source_root: str | None = None,
                          metadata: dict[str, str] | None = None, on_skip: SkipHandler | None = None,
                          callback: Callback | None = None) -> tuple[Manifest, str, str, TransferSummary]:
        """Snapshot `root` and `push` it, each small file read once: sent from the bytes it was hashed
        from while hashing goes on (`fscas.pipeline`), where `snapshot` then `push` read it twice.

        `include`, `exclude` and `on_skip` are `fscas.manifests.snapshot`'s; the rest are `push`'s.

        Returns:
            The manifest, the input manifest's key, its manifest hash, and the data transfer summary.
        """
        from fscas.manifests import snapshot
        from fscas.pipeline import push_tree

        key = keys.input_manifest_key(farm_id, queue_id, source_root or os.path.abspath(root))
        manifest, digest, summary = await push_tree(
            self, root, key, lambda on_hashed: snapshot(root, include=include, exclude=exclude, on_skip=on_skip,
                                                        on_hashed=on_hashed),
            metadata=metadata, callback=callback)
        return manifest, key, digest, summary

    async def commit(self, manifest: Manifest, root: str | os.PathLike[str], key: str, *,
                     metadata: dict[str, str] | None = None, callback: Callback | None = None
                     ) -> tuple[str, TransferSummary]:
        """Upload the files of `manifest` the store lacks, then write the manifest at `key` (create-only).

        Data goes first and the manifest last; a gc running at the same time cannot remove data
        the manifest references (`fscas.epoch`). When this returns, the manifest is complete.

        Returns:
            The manifest hash and the data transfer summary.
        """
        from fscas.commit import commit

        return await commit(self, manifest, root, key, metadata=metadata, callback=callback)

    async def put_output(self, manifest: Manifest, root: str | os.PathLike[str], **ids: Any
                         ) -> tuple[str, TransferSummary]:
        """Upload a task's outputs from `root`, then its output manifest with Deadline's metadata.

        See `fscas.outputs.put_output` for the keyword arguments (farm, queue, job, step, task and
        session-action ids, `start_time`, `source_root`, `file_system_location_name`, `callback`).
        """
        from fscas.outputs import put_output

        return await put_output(self, manifest, root, **ids)

    async def session_start(self, attachments: Attachments, session_dir: str | os.PathLike[str], **options: Any
                            ) -> SessionInputs:
        """Materialise a job's inputs in a worker's session folder, as Deadline's worker does.

        See `fscas.session.start` for the keyword arguments (farm, queue and job ids,
        `step_dependencies`, `locations`, `group`, `callback`)."""
        from fscas.session import start

        return await start(self, attachments, session_dir, **options)

    async def session_finish(self, attachments: Attachments, session_dir: str | os.PathLike[str], **options: Any
                             ) -> SessionOutputs:
        """Upload a task's outputs from a session folder and write its output manifests.

        See `fscas.session.finish` for the keyword arguments (the ids, `start_time`, `locations`)."""
        from fscas.session import finish

        return await finish(self, attachments, session_dir, **options)

    async def output_manifests(self, farm_id: str, queue_id: str, job_id: str, step_id: str | None = None,
                               task_id: str | None = None) -> list[OutputManifest]:
        """Every output manifest of a job (or step, or task); see `fscas.outputs.output_manifests`."""
        from fscas.outputs import output_manifests

        return await output_manifests(self, farm_id, queue_id, job_id, step_id, task_id)

    async def download_outputs(self, farm_id: str, queue_id: str, job_id: str, **options: Any) -> OutputsSummary:
        """Download a job's outputs as Deadline's `OutputDownloader` selects them; see
        `fscas.outputs.download_outputs` for the options (destinations, rules, `since`, conflict)."""
        from fscas.outputs import download_outputs

        return await download_outputs(self, farm_id, queue_id, job_id, **options)

    async def copy_to(self, destination: AsyncStore, *, manifests: Sequence[str] = (), farm_id: str | None = None,
                      queue_id: str | None = None, job_id: str | None = None, kind: ManifestKind | None = None,
                      everything: bool = False, since: str | None = None, dry_run: bool = False,
                      callback: Callback | None = None, client: Any = None, executor: Any = None) -> CopySummary:
        """Copy the selected manifests, and the Data they name that `destination` lacks, there.

        Every object is hashed on the way (a source object that does not match its key is reported
        and the manifests naming it are not written); manifests go last, byte for byte, with their
        metadata, through the destination's commit protocol. See `fscas.copying.copy_between` for
        the selection (`manifests`, `farm_id`/`queue_id`/`job_id`, `kind`, `everything`), `since`,
        `dry_run` and spreading the work (`client`, `executor`).
        """
        from fscas.copying import copy_between

        return await copy_between(self, destination, manifests=manifests, farm_id=farm_id, queue_id=queue_id,
                                  job_id=job_id, kind=kind, everything=everything, since=since, dry_run=dry_run,
                                  callback=callback, client=client, executor=executor)

    async def sync_outputs(self, farm_id: str, queue_id: str, **options: Any) -> QueueSyncSummary:
        """Download every job's new outputs in a queue, incrementally, with a checkpoint per queue, as
        `deadline queue sync-output` does; see `fscas.outputs_sync.sync_outputs` for the options
        (`checkpoint_dir`, `bootstrap_lookback_minutes`, `dry_run`, where roots go, `conflict`)."""
        from fscas.outputs_sync import sync_outputs

        return await sync_outputs(self, farm_id, queue_id, **options)

    async def gc(self, *, delete: bool = False, grace_seconds: float = 86400.0, lease: float = 60.0) -> GcReport:
        """Find (and with `delete`, remove) Data objects that no manifest under the store references.

        Safe beside running pushes on any host, whatever the grace period (`fscas.epoch`): objects
        younger than `grace_seconds` are simply not candidates. While deleting, gc holds the store
        epoch for `lease` seconds at a time; pushes wait for it, and take over from a gc that stops
        renewing. An unreadable manifest stops gc before anything is deleted.

        Raises:
            ConfigError: a negative grace period or a lease under one second.
        """
        from fscas.gc import collect

        if grace_seconds < 0 or lease < 1:
            raise ConfigError(f"gc needs grace_seconds >= 0 and lease >= 1, not {grace_seconds} and {lease}")
        return await collect(self, delete=delete, grace_seconds=grace_seconds, lease=lease)

    async def repair(self, manifest: Manifest, root: str | os.PathLike[str]) -> VerifyReport:
        """Read back every object of `manifest`; upload again from `root` each missing or corrupt one."""
        from fscas.verify import repair

        return await repair(self, manifest, root)

    async def verify(self, manifests: Iterable[Manifest] | None = None) -> VerifyReport:
        """Read back and hash every object the manifests reference (every Data object when None).

        Nothing is raised for a bad object: the report names each missing digest and each key
        whose size or bytes are wrong.
        """
        return await verify_objects(self.backend, manifests, concurrency=self.concurrency)



def open_async_store(target: str | os.PathLike[str] | Any, *, root: str | None = None,
                     backend: Literal["native", "fsspec"] | None = None, concurrency: int | None = None,
                     existence_cache: ExistenceCache | Literal[False] | None = None, **options: Any) -> AsyncStore:
    """Open a store for use from async code; see `fscas.open_store`."""
    opened = open_backend(target, root=root, backend=backend, **options)
    store = AsyncStore(opened, concurrency=concurrency or (8 if opened.url.startswith(("file:", "memory:")) else 32),
                       existence_cache=existence_cache)
    if isinstance(target, (str, os.PathLike)) and existence_cache in (None, False):
        store.opened_with = (os.fspath(target), {"root": root, "backend": backend, "concurrency": concurrency,
                                                 "existence_cache": existence_cache, **options})
    return store



