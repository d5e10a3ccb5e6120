"""`Store`: the blocking facade. Each method runs its `AsyncStore` twin on fscas's IO loop."""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from fscas.existence import ExistenceCache
from fscas.manifests import Manifest, OutputManifest
from fscas.runner import run_sync
from fscas.store import AsyncStore, ConflictMode, open_async_store
from fscas.summary import GcReport, TransferSummary
from fscas.verify import VerifyReport

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

    from fscas.attachments import Attachments
    from fscas.copying import CopySummary
    from fscas.listing import ManifestKind, StoredManifest
    from fscas.manifests.walker import SkipHandler
    from fscas.outputs import OutputsSummary
    from fscas.outputs_sync import QueueSyncSummary
    from fscas.session import SessionInputs, SessionOutputs

__all__ = ["Store", "copy", "open_store"]


def _close_quietly(aio: AsyncStore) -> None:
    with contextlib.suppress(Exception):  # at exit or in a collector: nobody to report to
        run_sync(aio.aclose())


class Store:
    """A content-addressed store for blocking code; the logic lives in `AsyncStore` (`.aio`)."""

    def __init__(self, aio: AsyncStore) -> None:
        self.aio = aio
        # A store dropped or left open at exit still closes its SDK sessions (no "Unclosed client
        # session" warnings from aiohttp); close() runs the same finaliser, once.
        self._finalizer = weakref.finalize(self, _close_quietly, aio)

    @property
    def url(self) -> str:
        """The backend's credential-free URL (the store identity)."""
        return self.aio.url

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the backend's sessions and the caches (also done when the store is garbage-collected,
        or at interpreter exit)."""
        if self._finalizer.detach() is not None:
            run_sync(self.aio.aclose())

    @property
    def existence_cache(self) -> ExistenceCache | None:
        """See `AsyncStore.existence_cache`."""
        return self.aio.existence_cache

    def forget(self, data_keys: Iterable[str] | None = None) -> None:
        """See `AsyncStore.forget`."""
        self.aio.forget(data_keys)

    def present(self, data_keys: list[str]) -> list[str]:
        """See `AsyncStore.present`."""
        return run_sync(self.aio.present(data_keys))

    def has(self, digest: str) -> bool:
        """See `AsyncStore.has`."""
        return run_sync(self.aio.has(digest))

    def put_bytes(self, data: bytes) -> str:
        """See `AsyncStore.put_bytes`."""
        return run_sync(self.aio.put_bytes(data))

    def put_file(self, path: str | os.PathLike[str]) -> str:
        """See `AsyncStore.put_file`."""
        return run_sync(self.aio.put_file(path))

    def get_bytes(self, digest: str) -> bytes:
        """See `AsyncStore.get_bytes`."""
        return run_sync(self.aio.get_bytes(digest))

    def get_file(self, digest: str, path: str | os.PathLike[str]) -> None:
        """See `AsyncStore.get_file`."""
        run_sync(self.aio.get_file(digest, path))

    def open(self, digest: str) -> BinaryIO:
        """See `AsyncStore.open`."""
        return run_sync(self.aio.open(digest))

    def missing(self, digests: list[str], *, use_cache: bool = True) -> set[str]:
        """See `AsyncStore.missing`."""
        return run_sync(self.aio.missing(digests, use_cache=use_cache))

    def upload(self, manifest: Manifest, root: str | os.PathLike[str], *, callback: Callback | None = None,
               use_cache: bool = True, check_cache: bool = True) -> TransferSummary:
        """See `AsyncStore.upload`."""
        return run_sync(self.aio.upload(manifest, root, callback=callback, use_cache=use_cache,
                                        check_cache=check_cache))

    def download(self, manifest: Manifest, dest: str | os.PathLike[str], *, conflict: ConflictMode = "skip",
                 checksum: bool = False, callback: Callback | None = None, dry_run: bool = False) -> TransferSummary:
        """See `AsyncStore.download`."""
        return run_sync(self.aio.download(manifest, dest, conflict=conflict, checksum=checksum, callback=callback,
                                          dry_run=dry_run))

    def manifests(self, *, kind: ManifestKind | None = None, farm_id: str | None = None,
                  queue_id: str | None = None) -> list[StoredManifest]:
        """See `AsyncStore.manifests`."""
        return run_sync(self.aio.manifests(kind=kind, farm_id=farm_id, queue_id=queue_id))

    def put_manifest(self, key: str, manifest: Manifest, *, metadata: dict[str, str] | None = None,
                     if_absent: bool = True) -> str:
        """See `AsyncStore.put_manifest`."""
        return run_sync(self.aio.put_manifest(key, manifest, metadata=metadata, if_absent=if_absent))

    def get_manifest(self, key: str) -> Manifest:
        """See `AsyncStore.get_manifest`."""
        return run_sync(self.aio.get_manifest(key))

    def push(self, manifest: Manifest, root: str | os.PathLike[str], *, farm_id: str, queue_id: str,
             source_root: str | None = None, metadata: dict[str, str] | None = None,
             callback: Callback | None = None) -> tuple[str, str, TransferSummary]:
        """See `AsyncStore.push`."""
        return run_sync(self.aio.push(manifest, root, farm_id=farm_id, queue_id=queue_id, source_root=source_root,
                                      metadata=metadata, callback=callback))

    def push_folder(self, root: str | os.PathLike[str], *, farm_id: str, queue_id: str,
                    include: Sequence[str] = (), exclude: Sequence[str] = (), source_root: str | None = None,
                    metadata: dict[str, str] | None = None, on_skip: SkipHandler | None = None,
                    callback: Callback | None = None) -> tuple[Manifest, str, str, TransferSummary]:
        """See `AsyncStore.push_folder`."""
        return run_sync(self.aio.push_folder(root, farm_id=farm_id, queue_id=queue_id, include=include,
                                             exclude=exclude, source_root=source_root, metadata=metadata,
                                             on_skip=on_skip, callback=callback))

    def commit(self, manifest: Manifest, root: str | os.PathLike[str], key: str, *,
               metadata: dict[str, str] | None = None, callback: Callback | None = None) -> tuple[str, TransferSummary]:
        """See `AsyncStore.commit`."""
        return run_sync(self.aio.commit(manifest, root, key, metadata=metadata, callback=callback))

    def put_output(self, manifest: Manifest, root: str | os.PathLike[str], **ids: Any) -> tuple[str, TransferSummary]:
        """See `AsyncStore.put_output` (same keyword arguments)."""
        return run_sync(self.aio.put_output(manifest, root, **ids))

    def output_manifests(self, farm_id: str, queue_id: str, job_id: str, step_id: str | None = None,
                         task_id: str | None = None) -> list[OutputManifest]:
        """See `AsyncStore.output_manifests`."""
        return run_sync(self.aio.output_manifests(farm_id, queue_id, job_id, step_id, task_id))

    def session_start(self, attachments: Attachments, session_dir: str | os.PathLike[str], **options: Any
                      ) -> SessionInputs:
        """See `AsyncStore.session_start`."""
        return run_sync(self.aio.session_start(attachments, session_dir, **options))

    def session_finish(self, attachments: Attachments, session_dir: str | os.PathLike[str], **options: Any
                       ) -> SessionOutputs:
        """See `AsyncStore.session_finish`."""
        return run_sync(self.aio.session_finish(attachments, session_dir, **options))

    def download_outputs(self, farm_id: str, queue_id: str, job_id: str, **options: Any) -> OutputsSummary:
        """See `AsyncStore.download_outputs` (same keyword arguments)."""
        return run_sync(self.aio.download_outputs(farm_id, queue_id, job_id, **options))

    def repair(self, manifest: Manifest, root: str | os.PathLike[str]) -> VerifyReport:
        """See `AsyncStore.repair`."""
        return run_sync(self.aio.repair(manifest, root))

    def verify(self, manifests: list[Manifest] | None = None) -> VerifyReport:
        """See `AsyncStore.verify`."""
        return run_sync(self.aio.verify(manifests))

    def sync_outputs(self, farm_id: str, queue_id: str, **options: Any) -> QueueSyncSummary:
        """See `AsyncStore.sync_outputs` (same keyword arguments)."""
        return run_sync(self.aio.sync_outputs(farm_id, queue_id, **options))

    def copy_to(self, destination: Store, **selection: Any) -> CopySummary:
        """See `AsyncStore.copy_to` (same keyword arguments)."""
        return run_sync(self.aio.copy_to(destination.aio, **selection))

    def gc(self, *, delete: bool = False, grace_seconds: float = 86400.0, lease: float = 60.0) -> GcReport:
        """See `AsyncStore.gc`."""
        return run_sync(self.aio.gc(delete=delete, grace_seconds=grace_seconds, lease=lease))


def open_store(target: str | os.PathLike[str] | Any, *, root: str | None = None,
               backend: Literal["native", "fsspec"] | None = None, concurrency: int | None = None,
               existence_cache: ExistenceCache | Literal[False] | None = None, **options: Any) -> Store:
    """Open the store at a URL, a folder, or on an fsspec filesystem you made.

    `target` is `s3://bucket/prefix`, `gs://`, `az://container/prefix`, a folder or `file://`,
    `memory://`, any other protocol fsspec knows (`sftp://user@host/path`, `ftp://`,
    `webdav+https://`, `hdfs://`...), or an fsspec filesystem instance with `root=` naming the
    folder (or `bucket/prefix`) of the store on it: the instance's own credentials, session and
    caching are used as given (through the generic backend, also for s3fs, gcsfs and adlfs
    instances). `backend="fsspec"` sends a native scheme through the generic backend as well.

    Options go to the backend (`endpoint_url`, `region`, `profile`, `anon`, ... or, on the generic
    backend, the filesystem's storage options), as keywords or in the URL's query string; a
    misspelt option of a native backend is a `ConfigError` naming the closest valid one.

    Example:
        >>> with fscas.open_store("/tmp/fscas-doc-store") as store:
        ...     digest = store.put_bytes(b"hello")
        ...     store.get_bytes(digest)
        b'hello'
    """
    return Store(open_async_store(target, root=root, backend=backend, concurrency=concurrency,
                                  existence_cache=existence_cache, **options))


def copy(source: str | os.PathLike[str] | Store, destination: str | os.PathLike[str] | Store, *,
         concurrency: int | None = None, **selection: Any) -> CopySummary:
    """Copy manifests and the Data they name from one store to another, verified, data before manifests.

    `source` and `destination` are stores or what `open_store` takes (URLs with their options in the
    query string, folders); the ones opened here are closed again. `selection` is
    `AsyncStore.copy_to`'s: `manifests=[...]`, `farm_id`/`queue_id`/`job_id`, `kind`,
    `everything=True`, `since=STATE_FILE`, `dry_run`, `callback`, and `client=`/`executor=` to spread
    the object copies.

    Example:
        >>> with fscas.open_store("/tmp/fscas-doc-a") as a:
        ...     key, _, _ = a.push(fscas.Manifest.from_paths([]), "/tmp", farm_id="f", queue_id="q")
        >>> fscas.copy("/tmp/fscas-doc-a", "/tmp/fscas-doc-b", manifests=[key]).manifests == (key,)
        True
    """
    with contextlib.ExitStack() as stack:
        src, dst = (s if isinstance(s, Store) else stack.enter_context(open_store(s, concurrency=concurrency))
                    for s in (source, destination))
        return src.copy_to(dst, **selection)
