"""A stored snapshot as a read-only fsspec filesystem: protocol `fscas` (Deadline's virtual file system,
without its binaries).

    fs = fsspec.filesystem("fscas", store="s3://bucket/root?endpoint_url=...", manifest="Manifests/...")
    fs.ls("renders"); fs.cat_file("renders/f1.exr", start=0, end=1024)
    pandas.read_csv("fscas://tables/a.csv", storage_options={"store": ..., "manifest": ...})

Every byte handed out is verified. A whole small object is checked against its xxh3-128 before it is
returned; anything else is served from the local content cache (`fscas.content`), which an object
enters only whole and verified (fetched with ranged GETs in parallel), so reading a range or seeking
never returns a byte the hash did not cover. The first read of a large file therefore fetches all
of it; later reads, and other processes sharing the cache, read from local disk. A corrupted object
raises `IntegrityError`, never wrong bytes. Writes raise `NotSupported`: a snapshot does not change.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from fscas.blocking import Store, open_store
from fscas.content import ContentCache
from fscas.errors import ConfigError, NotSupported
from fscas.manifests import Manifest, ManifestPath, decode
from fscas.paths import check_layout, check_relative
from fscas.runner import run_sync

__all__ = ["FscasFileSystem", "mount"]

_FSSPEC_OPTIONS = ("skip_instance_cache", "use_listings_cache", "listings_expiry_time", "max_paths")
WHOLE = 4 * 2**20
"""Files up to this size are read whole (one GET, verified in memory); larger ones through the cache."""


_FILE_MODE = stat.S_IFREG | 0o444  # the type bits as local's `ls(detail=True)` gives them: read-only files
_FOLDER_MODE = stat.S_IFDIR | 0o555
_OWNER = (os.getuid(), os.getgid()) if hasattr(os, "getuid") else (0, 0)  # Windows has no uid: say 0


class FscasFileSystem(AbstractFileSystem):  # type: ignore[misc]  # fsspec ships no type information
    """One manifest of a store, read-only, as an fsspec filesystem (protocol `fscas`).

    Args:
        store: a store URL or folder, an fsspec filesystem (with `root=`), or an open `fscas.Store`.
        manifest: a manifest key in the store (`Manifests/...`), a local manifest file, or a `Manifest`.
        root: the store's root on `store`, when `store` is an fsspec filesystem.
        cache: the content cache (default: `$XDG_CACHE_HOME/fscas/objects`, 10 GiB).
        **store_options: options of the store (`endpoint_url`, `key`, ...), as for `fscas.open_store`.
    """

    protocol = "fscas"
    root_marker = ""

    def __init__(self, store: Any = None, manifest: str | os.PathLike[str] | Manifest | None = None, *,
                 root: str | None = None, cache: ContentCache | None = None, **store_options: Any) -> None:
        fsspec_options = {k: store_options.pop(k) for k in _FSSPEC_OPTIONS if k in store_options}
        for name in ("asynchronous", "loop"):  # fsspec's async options: this filesystem is sync (zarr wraps it)
            store_options.pop(name, None)
        super().__init__(**fsspec_options)
        if store is None or manifest is None:
            raise ConfigError("fscas:// needs store= (a store URL, folder, filesystem or Store) and manifest= "
                              "(a key in the store, a local manifest file, or a Manifest)")
        self.store = store if isinstance(store, Store) else open_store(store, root=root, **store_options)
        self.cache = cache or ContentCache()
        self._source = manifest
        self._tree: tuple[Manifest, dict[str, ManifestPath], dict[str, set[str]]] | None = None
        self._lock = threading.Lock()

    @property
    def manifest(self) -> Manifest:
        """The snapshot's manifest (read on first use: making a filesystem does no I/O)."""
        return self._index()[0]

    def _index(self) -> tuple[Manifest, dict[str, ManifestPath], dict[str, set[str]]]:
        with self._lock:
            if self._tree is None:
                manifest = _load(self.store, self._source)
                where = os.fspath(self._source) if isinstance(self._source, (str, os.PathLike)) else "the manifest"
                for p in manifest.paths:  # one hostile name refuses the manifest, as pull refuses it
                    check_relative(p.path, where)
                check_layout(p.path for p in manifest.paths)
                children: dict[str, set[str]] = {"": set()}
                for path in manifest.by_path():
                    parts = path.split("/")
                    for i in range(1, len(parts) + 1):
                        children.setdefault("/".join(parts[: i - 1]), set()).add("/".join(parts[:i]))
                self._tree = manifest, manifest.by_path(), children
            return self._tree

    @property
    def _files(self) -> dict[str, ManifestPath]:
        return self._index()[1]

    @property
    def _children(self) -> dict[str, set[str]]:
        return self._index()[2]

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        path = path.removeprefix("fscas://").removeprefix("fscas::")
        return path.strip("/")

    # -- reading the tree --------------------------------------------------------------------

    def _entry(self, p: ManifestPath) -> dict[str, Any]:
        return {"name": p.path, "size": p.size, "type": "file", "mtime": p.mtime / 1e6, "hash": p.hash,
                "mode": _FILE_MODE, "uid": _OWNER[0], "gid": _OWNER[1]}

    def _folder(self, path: str) -> dict[str, Any]:
        return {"name": path, "size": 0, "type": "directory", "mode": _FOLDER_MODE, "uid": _OWNER[0],
                "gid": _OWNER[1]}

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if path in self._files:
            return self._entry(self._files[path])
        if path in self._children:
            return self._folder(path)
        raise FileNotFoundError(path)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if path in self._files:
            names: Iterable[str] = [path]
        elif path in self._children:
            names = sorted(self._children[path])
        else:
            raise FileNotFoundError(path)
        return [self.info(n) for n in names] if detail else list(names)

    # -- reading bytes -----------------------------------------------------------------------

    def _file(self, path: str) -> ManifestPath:
        path = self._strip_protocol(path)
        if path not in self._files:
            raise FileNotFoundError(path) if path not in self._children else IsADirectoryError(path)
        return self._files[path]

    def local_path(self, path: str) -> str:
        """The verified local copy of `path` in the content cache, fetched whole first when absent."""
        p = self._file(path)
        return str(run_sync(self.cache.fetch(self.store.aio.backend, p.hash, p.size)))

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        p = self._file(path)
        whole = (start or 0) == 0 and (end is None or end >= p.size)
        if whole and p.size <= WHOLE and self.cache.get(p.hash, p.size) is None:
            return self.store.get_bytes(p.hash)  # verified before it is returned
        with open(self.local_path(path), "rb") as f:
            first, last = _span(start, end, p.size)
            f.seek(first)
            return f.read(max(0, last - first))

    def modified(self, path: str) -> datetime.datetime:
        """The file's mtime as the manifest records it (UTC)."""
        return datetime.datetime.fromtimestamp(self._file(path).mtime / 1e6, datetime.UTC)

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if "r" not in mode or "+" in mode:
            raise NotSupported(f"fscas://{path}: read-only: a snapshot does not change; push a new one")
        p = self._file(path)
        # fsspec's buffered file, so read_block, blockcache:: and every reader see fsspec's interface.
        # A small file is one verified GET held whole ("all"); a larger one is read in blocks from its
        # verified copy in the content cache.
        small = p.size <= WHOLE
        return FscasFile(self, p.path, mode, block_size=p.size or 1 if small else block_size or "default",
                         autocommit=autocommit, cache_type="all" if small else kwargs.pop("cache_type", "readahead"),
                         cache_options=cache_options, size=p.size)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as the store's URL and options with the manifest, for Dask workers to open again."""
        spec = self.store.aio.opened_with
        if spec is None:
            raise TypeError("this fscas:// filesystem's store was made from a backend or a filesystem "
                            "instance and cannot be opened elsewhere; give store= a URL or folder (with its "
                            "options) to pickle it")
        target, options = spec
        fsspec_options = {k: v for k, v in self.storage_options.items() if k in _FSSPEC_OPTIONS}
        return _reopened, (type(self), target, options, self._source, self.cache, fsspec_options)

    # -- everything that would change the snapshot -------------------------------------------

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise NotSupported("fscas:// is read-only: a snapshot does not change; push a new one")

    pipe_file = put_file = rm_file = rm = mkdir = makedirs = rmdir = mv = cp_file = touch = _read_only

    def __repr__(self) -> str:
        source = self._source if isinstance(self._source, (str, os.PathLike)) else "<Manifest>"
        return f"FscasFileSystem({self.store.url!r}, {os.fspath(source)!r})"


class FscasFile(AbstractBufferedFile):  # type: ignore[misc]  # fsspec ships no type information
    """A file of a `fscas://` snapshot: fsspec's read-only buffered file over `cat_file` ranges."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        return bytes(self.fs.cat_file(self.path, start, end))


def _reopened(cls: type[FscasFileSystem], target: str, options: dict[str, Any], manifest: Any, cache: ContentCache,
              fsspec_options: dict[str, Any]) -> FscasFileSystem:
    return cls(open_store(target, **options), manifest, cache=cache, **fsspec_options)


def _span(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    """fsspec's range convention (negative means from the end, None the edge) as absolute offsets."""
    first = 0 if start is None else (start if start >= 0 else max(0, size + start))
    last = size if end is None else (end if end >= 0 else max(0, size + end))
    return min(first, size), min(last, size)


def _load(store: Store, manifest: str | os.PathLike[str] | Manifest) -> Manifest:
    if isinstance(manifest, Manifest):
        return manifest
    if os.path.isfile(manifest):
        with open(manifest, "rb") as f:
            return decode(f.read())
    return store.get_manifest(os.fspath(manifest))


def mount(fs: FscasFileSystem, mountpoint: str | os.PathLike[str], *, foreground: bool = True) -> None:
    """Serve `fs` read-only at `mountpoint` through FUSE (`mfusepy` on libfuse 3, or 2; `fscas.vfs`'s operations).

    Files are fetched (verified, into the content cache) on their first read; reading one starts
    fetching the next small files in the snapshot's order (`fscas.readahead`). Listing fetches
    nothing. With `foreground`, this returns once the mount is gone (`fusermount -u MOUNTPOINT`,
    Ctrl-C or SIGTERM).

    Raises:
        ConfigError: the mountpoint is not an empty folder, or FUSE is not installed.
    """
    target = Path(mountpoint)
    if not target.is_dir() or any(target.iterdir()):
        raise ConfigError(f"{target}: a mountpoint must be an empty folder")
    from fscas.fuse_bridge import load, serve
    from fscas.vfs import overlay_operations

    load("fscas mount")
    fs.manifest  # noqa: B018 - a bad manifest is an error before anything is mounted
    ops = overlay_operations(fs, None, prefetch=True)
    if foreground:
        import gc

        gc.freeze()  # the manifest and its index live as long as the mount: no collection walks them again

    def serve_it() -> None:
        serve(ops, str(target), snapshot=True)

    if foreground:
        with contextlib.suppress(KeyboardInterrupt):
            serve_it()
    else:
        threading.Thread(target=serve_it, daemon=True).start()
