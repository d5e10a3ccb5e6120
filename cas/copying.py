"""Store to store: manifests and the Data they name, from one store to another, verified on the way.

Each selected manifest's objects the destination lacks are read from the source and written to the
destination, every one hashed as it passes (a source object whose bytes do not match its key is
reported by key and not copied; `fscas.object_copy`), never through local disk. Manifests go last,
byte for byte, with their metadata (each backend maps Deadline's names for its wire: `asset-root`
on S3, `asset_root` on Azure), through the destination's commit protocol (`fscas.commit`): a concurrent gc there loses
nothing, and no manifest is ever visible before its data.

Rerunning after a kill picks up where it stopped: a manifest already in the destination is not read
again, and objects already there are found by the destination's existence check.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from fscas import keys
from fscas.errors import ConfigError, ManifestError, ObjectNotFound
from fscas.listing import ManifestKind, StoredManifest, kind_of, list_manifests
from fscas.manifests import decode
from fscas.object_copy import copy_objects, side

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from fsspec.callbacks import Callback

    from fscas.store import AsyncStore

__all__ = ["CopySummary", "copy_between", "refuse_overlap"]

_STATE_VERSION = "fscas-copy-state-1"


@attrs.frozen(kw_only=True)
class CopySummary:
    """What a copy did (or, with `dry_run`, would do)."""

    source: str
    destination: str
    manifests: tuple[str, ...]
    """Keys of the manifests written to the destination (with `dry_run`: to be written)."""
    unchanged: int
    """Selected manifests the destination already holds (or the `since` state records): not read."""
    objects: int
    """Data objects copied."""
    bytes: int
    skipped_objects: int = 0
    """Objects the selected manifests name that the destination already holds."""
    skipped_bytes: int = 0
    refused: tuple[tuple[str, str], ...] = ()
    """(manifest key, why) of the manifests not written: a bad source object, an unreadable manifest,
    a different object under the same key in the destination."""
    bad_objects: tuple[tuple[str, str], ...] = ()
    """(source key, why) of the source objects that were missing or did not hash to their key."""
    dry_run: bool = False
    seconds: float = 0.0
    workers: int = 1

    @property
    def ok(self) -> bool:
        """Every selected manifest is in the destination, whole."""
        return not self.refused

    def as_dict(self) -> dict[str, Any]:
        """Plain fields for `--json`."""
        return {"source": self.source, "destination": self.destination, "ok": self.ok, "dry_run": self.dry_run,
                "manifests": list(self.manifests), "unchanged": self.unchanged, "objects": self.objects,
                "bytes": self.bytes, "skipped_objects": self.skipped_objects, "skipped_bytes": self.skipped_bytes,
                "refused": [{"key": k, "reason": r} for k, r in self.refused],
                "bad_objects": [{"key": k, "reason": r} for k, r in self.bad_objects],
                "seconds": round(self.seconds, 3), "workers": self.workers}


def refuse_overlap(source: str, destination: str) -> None:
    """Refuse a copy onto itself: the same store, or one store's root inside the other's.

    Raises:
        ConfigError: naming both stores.
    """
    base_s, _, query_s = source.partition("?")
    base_d, _, query_d = destination.partition("?")
    if query_s != query_d:  # another endpoint or account: another server
        return
    a, b = base_s.rstrip("/") + "/", base_d.rstrip("/") + "/"
    if a.startswith(b) or b.startswith(a):
        what = "the same store" if a == b else "overlapping stores (one's root is inside the other's)"
        raise ConfigError(f"copy from {source} to {destination}: {what}; give another destination")


@attrs.frozen
class _Read:
    key: str
    data: bytes
    metadata: dict[str, str]
    digests: dict[str, int]


async def _select(src: AsyncStore, *, manifests: Sequence[str], farm_id: str | None, queue_id: str | None,
                  job_id: str | None, kind: ManifestKind | None, everything: bool) -> list[StoredManifest]:
    """The source manifests the selection names, each once, in key order."""
    if not (manifests or farm_id or queue_id or everything):
        raise ConfigError("say what to copy: --manifest KEY, --farm-id/--queue-id [--job-id], or --all")
    if job_id and not (farm_id and queue_id):
        raise ConfigError("--job-id needs --farm-id and --queue-id")
    if queue_id and not farm_id:
        raise ConfigError("--queue-id needs --farm-id")
    if job_id and kind == "input":
        raise ConfigError("--job-id selects a job's outputs: input manifest keys name no job "
                          "(select them with --manifest or by queue)")
    found: dict[str, StoredManifest] = {}
    with side("source"):
        for key in manifests:
            if not key.startswith(keys.MANIFESTS + "/"):
                raise ConfigError(f"--manifest {key}: not a manifest key (they start with {keys.MANIFESTS}/)")
            try:
                info = await src.backend.head(key)
            except ObjectNotFound:
                raise ObjectNotFound(f"{src.url}: {key}: no such manifest") from None
            found[key] = StoredManifest(key=key, kind=kind_of(key), size=info.size, last_modified=info.last_modified)
        if everything or farm_id:
            async for m in list_manifests(src.backend, kind="output" if job_id else kind, farm_id=farm_id,
                                          queue_id=queue_id):
                if job_id and m.key.split("/")[3] != job_id:
                    continue
                found.setdefault(m.key, m)
    return [found[k] for k in sorted(found)]


async def _read(src: AsyncStore, m: StoredManifest) -> _Read | tuple[str, str]:
    """A source manifest's bytes, metadata and objects; or (key, why) when it is not a manifest."""
    with side("source"):
        info, data = await asyncio.gather(src.backend.head(m.key), src.backend.get(m.key))
    try:
        manifest = decode(data)
    except ManifestError as e:
        return m.key, f"not a manifest: {e}"
    return _Read(m.key, data, dict(info.metadata), {p.hash: p.size for p in manifest.paths})


async def _present_in(dst: AsyncStore, chosen: Sequence[StoredManifest]) -> dict[str, int]:
    """The destination's manifests among `chosen`, with their sizes: one listing of the narrowest
    prefix that holds them all (a HEAD each when a few keys are named across farms)."""
    parts = [m.key.split("/") for m in chosen]
    farms = {p[1] for p in parts if len(p) > 1}
    queues = {p[2] for p in parts if len(p) > 2}
    with side("destination"):
        if len(chosen) <= 4 and (len(farms) > 1 or len(queues) > 1 or not farms):
            found: dict[str, int] = {}
            for m in chosen:
                with contextlib.suppress(ObjectNotFound):
                    found[m.key] = (await dst.backend.head(m.key)).size
            return found
        farm = next(iter(farms)) if len(farms) == 1 else None
        queue = next(iter(queues)) if farm and len(queues) == 1 else None
        return {m.key: m.size async for m in list_manifests(dst.backend, farm_id=farm, queue_id=queue)}


async def copy_between(src: AsyncStore, dst: AsyncStore, *, manifests: Sequence[str] = (), farm_id: str | None = None,
                       queue_id: str | None = None, job_id: str | None = None, kind: ManifestKind | None = None,
                       everything: bool = False, since: str | None = None, dry_run: bool = False,
                       callback: Callback | None = None, client: Any = None, executor: Executor | None = None
                       ) -> CopySummary:
    """Copy the selected manifests, and the objects they name that `dst` lacks, from `src` to `dst`.

    Args:
        manifests: manifest keys to copy.
        farm_id, queue_id, job_id: every manifest of a farm or queue (inputs and outputs), or the
            outputs of a job.
        kind: only `input` or `output` manifests of that selection.
        everything: every manifest under the source's `Manifests/`.
        since: a state file: manifests it records (key and LastModified) are not looked at again;
            rewritten atomically after the copy. A missing file means none.
        dry_run: list, read the selected manifests and ask the destination what it lacks; write nothing.
        client, executor: spread the object copies over a Dask cluster or any Executor (both stores
            must have been opened from URLs: each worker opens them again).

    Raises:
        ConfigError: nothing selected, the same or overlapping stores, a bad state file.
        ObjectNotFound: a named manifest is not in the source (or a bucket is missing: `BucketNotFound`).
        StoreError: any other failure of either store, the message starting with its side.
    """
    from fscas.state import SeenState

    started = time.monotonic()
    refuse_overlap(src.url, dst.url)
    state = None if since is None else SeenState.load(
        since, _STATE_VERSION, {"source": src.url, "destination": dst.url}, "copy")
    chosen = await _select(src, manifests=manifests, farm_id=farm_id, queue_id=queue_id, job_id=job_id, kind=kind,
                           everything=everything)
    fresh = [m for m in chosen if state is None or not state.has(m.key, m.last_modified)]
    present = await _present_in(dst, fresh) if fresh else {}
    todo = [m for m in fresh if m.key not in present]
    refused: list[tuple[str, str]] = [(m.key, f"the destination holds another object under this key "
                                              f"({present[m.key]} bytes, the source's has {m.size})")
                                      for m in fresh if m.key in present and present[m.key] != m.size]
    slots = asyncio.Semaphore(src.concurrency)

    async def read(m: StoredManifest) -> _Read | tuple[str, str]:
        async with slots:
            return await _read(src, m)

    read_all = await asyncio.gather(*(read(m) for m in todo))
    readable = [r for r in read_all if isinstance(r, _Read)]
    refused += [r for r in read_all if not isinstance(r, _Read)]
    sizes = {d: s for r in readable for d, s in r.digests.items()}
    summary = await _send_and_commit(src, dst, readable, sizes, refused, dry_run=dry_run, callback=callback,
                                     client=client, executor=executor)
    if state is not None and not dry_run:
        written = set(summary.manifests)
        state.record((m.key, m.last_modified) for m in fresh if m.key in written or present.get(m.key) == m.size)
        state.save()
    unchanged = len(chosen) - len(fresh) + sum(1 for m in fresh if present.get(m.key) == m.size)
    return attrs.evolve(summary, unchanged=unchanged, seconds=time.monotonic() - started)


async def _send_and_commit(src: AsyncStore, dst: AsyncStore, readable: list[_Read], sizes: dict[str, int],
                           refused: list[tuple[str, str]], *, dry_run: bool, callback: Callback | None,
                           client: Any, executor: Executor | None) -> CopySummary:
    """The objects first, then the manifests whose objects all arrived (`fscas.commit`)."""
    from fscas.commit import Entry, begin, commit_entries
    from fscas.summary import TransferSummary

    base = CopySummary(source=src.url, destination=dst.url, manifests=(), unchanged=0, objects=0, bytes=0,
                       dry_run=dry_run)
    if not readable:
        return attrs.evolve(base, refused=tuple(refused))
    if dry_run:
        with side("destination"):
            lacking = await dst.missing(sizes)
        return attrs.evolve(base, manifests=tuple(r.key for r in readable), objects=len(lacking),
                            bytes=sum(sizes[d] for d in lacking), skipped_objects=len(sizes) - len(lacking),
                            skipped_bytes=sum(sizes.values()) - sum(sizes[d] for d in lacking),
                            refused=tuple(refused))
    bad: dict[str, str] = {}  # source key: why
    bad_digests: set[str] = set()
    confirmed: set[str] = set()
    workers = [1]

    async def send(use_cache: bool, cb: Callback | None) -> TransferSummary:
        with side("destination"):
            lacking = await dst.missing(sizes, use_cache=use_cache)
        todo = sorted((d, sizes[d]) for d in lacking if d not in bad_digests)
        if client is not None or executor is not None:
            from fscas.distributed import copy_objects_spread

            done, found_bad, workers[0] = await asyncio.to_thread(copy_objects_spread, src, dst, todo, client=client,
                                                                  executor=executor)
        else:
            done, found_bad = await copy_objects(src.backend, dst.backend, todo, concurrency=dst.concurrency,
                                                 callback=cb)
        dst._remember(keys.data_key(d) for d in done)
        confirmed.update(done)
        bad.update(found_bad)
        bad_digests.update(d for k in found_bad if (d := keys.digest_of_key(k)) is not None)
        sent = sum(sizes[d] for d in done)
        return TransferSummary(files=len(done), bytes=sent, skipped_files=len(sizes) - len(todo),
                               skipped_bytes=sum(sizes.values()) - sum(s for _, s in todo))

    with side("destination"):
        checked = await begin(dst)
    first = await send(True, callback)
    whole = [r for r in readable if not bad_digests.intersection(r.digests)]
    for r in readable:
        if (hit := sorted(bad_digests.intersection(r.digests))):
            refused.append((r.key, f"{len(hit)} of its objects are missing or corrupt in the source "
                                   f"(first: {keys.data_key(hit[0])})"))
    first_sent = [first]

    async def again(use_cache: bool, cb: Callback | None) -> TransferSummary:
        if first_sent:  # the commit's first send is the one already done
            return first_sent.pop()
        return await send(use_cache, cb)

    wanted = {d: s for r in whole for d, s in r.digests.items()}
    with side("destination"):
        _, existed = await commit_entries(dst, [Entry(r.key, r.data, r.metadata or None) for r in whole], wanted,
                                          again, checked=checked, confirmed=confirmed, existing_ok=True)
    for key in existed:  # another copy wrote it meanwhile: the same bytes are fine, others are not
        with side("destination"):
            theirs = await dst.backend.get(key)
        if theirs != next(r.data for r in whole if r.key == key):
            refused.append((key, "the destination holds another object under this key"))
    return attrs.evolve(base, manifests=tuple(r.key for r in whole if r.key not in existed), objects=len(confirmed),
                        bytes=sum(sizes[d] for d in confirmed), skipped_objects=first.skipped_files,
                        skipped_bytes=first.skipped_bytes, refused=tuple(refused),
                        bad_objects=tuple(sorted(bad.items())), workers=workers[0])
