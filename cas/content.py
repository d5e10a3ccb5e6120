"""A local cache of whole, verified objects by digest: what `fscas://` reads, mounts and downloads share.

An object enters only verified (size and xxh3-128 checked): through `fetch_to_file` (temp file +
rename), so a file in the cache is always its digest's content and reading a range of it is as safe
as reading the whole; or, read as bytes (`fetch_bytes`, at most `PACKED_MAX`), appended to a pack
(`packs.py`), whose bytes are checked against the digest again on every read. Files are
`<folder>/<hash[:2]>/<hash>`, read-only, packs `<folder>/packs/`; the least recently used go when
the cache passes its budget. Several processes may share one folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fscas.fetching import fetch_to_file, get_verified
from fscas.manifests.cachedir import default_cache_dir
from fscas.packs import PACKED_MAX, Packs

if TYPE_CHECKING:
    from fscas.backends import Backend

__all__ = ["ContentCache"]

DEFAULT_BUDGET = 10 * 2**30


class ContentCache:
    """Whole verified objects on local disk, at most `max_bytes` of them (least recently used go first).

    Args:
        path: the folder (default `$XDG_CACHE_HOME/fscas/objects`).
        max_bytes: the budget; an object larger than the whole budget is still fetched, then the
            others make room for it.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, max_bytes: int = DEFAULT_BUDGET) -> None:
        self.path = Path(path) if path is not None else Path(default_cache_dir()) / "objects"
        self.max_bytes = max_bytes
        self._used: int | None = None  # bytes held, as last counted plus what this object fetched since
        self._folders: set[Path] = set()  # hash-prefix folders known to exist
        self.packs = Packs(self.path / "packs")

    def __repr__(self) -> str:
        return f"ContentCache({str(self.path)!r}, max_bytes={self.max_bytes})"

    def __getstate__(self) -> dict[str, Any]:
        """Pickled as its folder and budget: another process opens the same cache, with packs of its own."""
        return {"path": self.path, "max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        ContentCache.__init__(self, state["path"], max_bytes=state["max_bytes"])

    def path_of(self, digest: str) -> Path:
        """Where the object with this digest lives in the cache (whether or not it is there)."""
        return Path(self._where(digest))

    def _where(self, digest: str) -> str:
        # A plain string: a mount asks `get` of every small file it reads ahead, mostly to miss, and
        # pathlib costs 10 us a miss where os.stat alone costs 3.
        return f"{self.path}/{digest[:2]}/{digest}"

    def get(self, digest: str, size: int) -> Path | None:
        """The cached file of `digest`, or None; a use marks it recently used."""
        path = self._where(digest)
        try:
            if os.stat(path).st_size != size:
                return None
            os.utime(path)  # the mtime is the last use: eviction goes by it
        except FileNotFoundError:
            return None
        return Path(path)

    def get_bytes(self, digest: str, size: int) -> bytes | None:
        """The packed bytes of `digest` (verified as they are read), or None."""
        return self.packs.get(digest, size) if size <= PACKED_MAX else None

    async def fetch_bytes(self, backend: Backend, digest: str, size: int) -> bytes:
        """The bytes of a small object (at most `PACKED_MAX`), downloaded (verified) into a pack first
        when absent: one append, not one new file, per object.

        Raises:
            ValueError: `size` is over `PACKED_MAX` (use `fetch`).
            ObjectNotFound: the store has no such object.
            IntegrityError: the stored bytes do not match the digest (nothing enters the cache).
        """
        if size > PACKED_MAX:
            raise ValueError(f"{digest}: {size} bytes is over the {PACKED_MAX} a pack holds; fetch it as a file")
        if (hit := self.packs.get(digest, size)) is not None:
            return hit
        if (cached := self.get(digest, size)) is not None:  # a file an earlier `fetch` made
            with contextlib.suppress(FileNotFoundError):  # unless evicted since
                return cached.read_bytes()
        data = await get_verified(backend, digest, size)
        if self.packs.put(digest, data):  # not kept (a full disk): served all the same
            self._count(digest, size)
        return data

    def _count(self, digest: str, size: int) -> None:
        # Counted once, then kept up to date: a scan of the whole cache per fetch made reading N
        # files through a mount cost N^2 stats. Other processes' additions are seen at the next scan.
        if self._used is None or self._used + size > self.max_bytes:
            self.evict(keep=digest)
        else:
            self._used += size

    async def fetch(self, backend: Backend, digest: str, size: int, *,
                    keep: Callable[[bytes], None] | None = None) -> Path:
        """The cached file of `digest`, downloaded (verified) from `backend` first when absent.

        `keep`, if given, is handed the verified bytes of an object this call downloads whole in
        memory (at most one part), sparing a reader that wants them now a read of the cached file.

        Raises:
            ObjectNotFound: the store has no such object.
            IntegrityError: the stored bytes do not match the digest (nothing enters the cache).
        """
        if (hit := self.get(digest, size)) is not None:
            return hit
        target = self.path_of(digest)

        def place() -> Path:
            if target.parent not in self._folders:  # 256 folders: made once, not once per object
                target.parent.mkdir(parents=True, exist_ok=True)
                self._folders.add(target.parent)
            return target

        try:
            await fetch_to_file(backend, digest, size, place, mtime_us=None, progress=lambda n: None, keep=keep)
        except FileNotFoundError:  # the folder went (the cache emptied by hand meanwhile): make it again
            self._folders.discard(target.parent)
            await fetch_to_file(backend, digest, size, place, mtime_us=None, progress=lambda n: None, keep=keep)
        os.chmod(target, 0o444)  # a cached object never changes
        self._count(digest, size)
        return target

    def evict(self, *, keep: str | None = None) -> int:
        """Remove the least recently used objects (and packs) until the cache fits its budget; return
        bytes freed. The pack this process is writing stays."""
        entries: list[tuple[float, int, Path | str]] = []
        with contextlib.suppress(FileNotFoundError):
            for folder in self.path.iterdir():
                for obj in folder.iterdir() if folder.is_dir() and folder != self.packs.folder else ():
                    with contextlib.suppress(FileNotFoundError):
                        st = obj.stat()
                        entries.append((st.st_mtime, st.st_size, obj))
        entries += self.packs.units()
        total = sum(size for _, size, _ in entries) + self.packs.written
        freed = 0
        for _, size, f in sorted(entries, key=lambda e: e[0]):
            if total - freed <= self.max_bytes:
                break
            if isinstance(f, str):
                self.packs.remove(f)
                freed += size
            elif f.name != keep and not f.name.startswith("."):  # temp files of a fetch in flight stay
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
                    freed += size
        self._used = total - freed
        return freed

    def digests(self) -> set[str]:
        """The digest of every object in the cache, packed or in a file."""
        files = {f.name for f in self.path.glob("??/*") if not f.name.startswith(".")}
        return files | self.packs.digests()

    def clear(self) -> None:
        """Remove every cached object."""
        self._used = None
        self._folders.clear()
        self.packs.clear()
        for folder in list(self.path.glob("??")):
            for f in folder.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()

