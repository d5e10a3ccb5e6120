"""A session's inputs mounted lazily and writable, Deadline's VIRTUAL job-attachment file system.

The lower layer is a stored snapshot (`fscas.fs.FscasFileSystem`): a file is fetched, verified, into
the content cache on its first open, so a task that reads 10 of 10,000 inputs fetches 10 objects.
The upper layer is a local folder: whatever the task creates or changes lands there (a lower file
is copied up whole before its first change), deletions of lower files are remembered as whiteouts.
`fscas mount` serves the lower layer alone, read-only, with sequential read-ahead. A VIRTUAL
session's mount is served by a process of its own (`fscas.vfs_server`), so it outlives the
`fscas session start` that made it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import shutil
import stat
import threading
import time
from typing import TYPE_CHECKING, Any

from fscas.errors import ConfigError, FscasError

if TYPE_CHECKING:
    from fscas.fs import FscasFileSystem

__all__ = ["overlay_operations", "require_fuse"]

def overlay_operations(fs: FscasFileSystem, upper: str | os.PathLike[str] | None, *, prefetch: bool = False) -> Any:
    """fusepy operations serving `fs`, with the local folder `upper` layered over it and writable, or
    read-only (every change EROFS) when `upper` is None. With `prefetch`, opening a file starts
    fetching the small files after it (`_Prefetch`: `fscas mount`, where `cp -r` reads whole trees);
    a VIRTUAL session fetches only what the task opens."""
    from fuse import FuseOSError, Operations

    ahead = _Prefetch(fs) if prefetch else None

    class Overlay(Operations):  # type: ignore[misc]  # fusepy ships no type information
        use_ns = True  # times cross as integer nanoseconds

        def __init__(self) -> None:
            self.upper = None if upper is None else os.fspath(upper)
            self.gone: set[str] = set()  # lower paths deleted (whiteouts, for this mount's life)
            self.mutex = threading.RLock()  # not `lock`: that name is FUSE's POSIX-lock operation
            self.modes = (0o644, 0o755) if self.upper is not None else (0o444, 0o555)

        # -- where a path is ---------------------------------------------------------------

        def _up(self, rel: str) -> str:
            if self.upper is None:
                raise FuseOSError(errno.EROFS)  # a snapshot does not change
            return os.path.join(self.upper, *rel.split("/")) if rel else self.upper

        def _held(self, rel: str) -> str | None:
            """The upper path of `rel` when the upper layer holds it."""
            if self.upper is None:
                return None
            up = self._up(rel)
            return up if os.path.lexists(up) else None

        def _hidden(self, rel: str) -> bool:
            parts = rel.split("/")
            return any("/".join(parts[:i]) in self.gone for i in range(1, len(parts) + 1))

        def _lower(self, rel: str) -> Any:
            """The lower file's `ManifestPath`, "dir" for a lower folder, None when there is none."""
            if rel and self.gone and self._hidden(rel):
                return None
            if rel in fs._files:
                return fs._files[rel]
            return "dir" if rel in fs._children else None

        def _copy_up(self, rel: str) -> str:
            """The upper path of `rel`, the lower file (or folder) copied there first if need be."""
            up = self._up(rel)
            with self.mutex:
                if os.path.lexists(up):
                    return up
                low = self._lower(rel)
                if low is None:
                    raise FuseOSError(errno.ENOENT)
                if low == "dir":
                    os.makedirs(up, exist_ok=True)
                    return up
                os.makedirs(os.path.dirname(up), exist_ok=True)
                tmp = f"{up}.fscas-copy-up"
                shutil.copyfile(fs.local_path(rel), tmp)
                os.chmod(tmp, 0o644)
                os.utime(tmp, ns=(low.mtime * 1000, low.mtime * 1000))
                os.replace(tmp, up)
                return up

        def _parent_up(self, rel: str) -> str:
            up = self._up(rel)
            parent = rel.rpartition("/")[0]
            if parent:
                self.getattr("/" + parent)  # ENOENT when the parent is not there
            os.makedirs(os.path.dirname(up), exist_ok=True)
            return up

        def _unhide(self, rel: str) -> None:
            if rel in self.gone:  # a folder made again where a lower one was removed: its old files stay gone
                self.gone.discard(rel)
                self.gone.update(fs._children.get(rel, ()))

        # -- reading -----------------------------------------------------------------------

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            rel = path.strip("/")
            if (up := self._held(rel)) is not None:
                st = os.lstat(up)
                return {k: getattr(st, k) for k in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size")} | {
                    "st_atime": st.st_atime_ns, "st_mtime": st.st_mtime_ns, "st_ctime": st.st_ctime_ns}
            low = self._lower(rel)
            if low is None:
                raise FuseOSError(errno.ENOENT)
            owner = {"st_uid": os.getuid(), "st_gid": os.getgid()}
            if low == "dir":
                now = time.time_ns()
                return {"st_mode": stat.S_IFDIR | self.modes[1], "st_nlink": 2, "st_size": 0, "st_atime": now,
                        "st_mtime": now, "st_ctime": now, **owner}
            ns = low.mtime * 1000  # manifests keep microseconds
            return {"st_mode": stat.S_IFREG | self.modes[0], "st_nlink": 1, "st_size": low.size, "st_atime": ns,
                    "st_mtime": ns, "st_ctime": ns, **owner}

        def readdir(self, path: str, fh: int) -> list[str]:
            rel = path.strip("/")
            names = set()
            if (up := self._held(rel)) is not None:
                with contextlib.suppress(NotADirectoryError):
                    names.update(os.listdir(up))
            if self._lower(rel) == "dir":
                names.update(child.rpartition("/")[2] for child in fs._children.get(rel, ())
                             if not self._hidden(child))
            return [".", "..", *sorted(n for n in names if not n.endswith(".fscas-copy-up"))]

        def readlink(self, path: str) -> str:
            return os.readlink(self._up(path.strip("/")))

        def open(self, path: str, flags: int) -> int:
            rel = path.strip("/")
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC):
                return os.open(self._copy_up(rel), flags & ~os.O_CREAT)
            if (up := self._held(rel)) is not None:
                return os.open(up, flags)
            low = self._lower(rel)
            if low is None or low == "dir":
                raise FuseOSError(errno.ENOENT if low is None else errno.EISDIR)
            if ahead is not None:
                ahead.wait(low.hash)
                ahead.opened(rel)
            try:  # fetched and verified on first open; a cached copy is opened without a trip to the IO loop
                hit = fs.cache.get(low.hash, low.size)
                return os.open(hit if hit is not None else fs.local_path(rel), os.O_RDONLY)
            except FscasError as e:
                raise FuseOSError(errno.EIO) from e

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return os.pread(fh, size, offset)

        def statfs(self, path: str) -> dict[str, Any]:
            st = os.statvfs(self.upper or (str(fs.cache.path) if fs.cache.path.exists() else "/"))
            return {k: getattr(st, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                 "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

        # -- writing: into the upper folder ------------------------------------------------

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            rel = path.strip("/")
            up = self._parent_up(rel)
            with self.mutex:
                self._unhide(rel)
                return os.open(up, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            return os.pwrite(fh, data, offset)

        def truncate(self, path: str, length: int, fh: int | None = None) -> None:
            if fh is not None and self.upper is not None:
                os.ftruncate(fh, length)
            else:
                os.truncate(self._copy_up(path.strip("/")), length)

        def flush(self, path: str, fh: int) -> None:
            return None

        def fsync(self, path: str, datasync: int, fh: int) -> None:
            os.fsync(fh)

        def release(self, path: str, fh: int) -> None:
            os.close(fh)

        def mkdir(self, path: str, mode: int) -> None:
            rel = path.strip("/")
            try:
                self.getattr(path)
            except FuseOSError:
                pass
            else:
                raise FuseOSError(errno.EEXIST)
            up = self._parent_up(rel)
            with self.mutex:
                os.mkdir(up, mode)
                self._unhide(rel)

        def unlink(self, path: str) -> None:
            rel = path.strip("/")
            up = self._up(rel)  # EROFS on a read-only mount
            with self.mutex:
                found = os.path.lexists(up)
                if found:
                    os.unlink(up)
                if self._lower(rel) is not None:
                    self.gone.add(rel)
                elif not found:
                    raise FuseOSError(errno.ENOENT)

        def rmdir(self, path: str) -> None:
            rel = path.strip("/")
            self._up(rel)  # EROFS on a read-only mount
            if len(self.readdir(path, 0)) > 2:
                raise FuseOSError(errno.ENOTEMPTY)
            with self.mutex:
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(self._up(rel))
                if self._lower(rel) is not None:
                    self.gone.add(rel)

        def rename(self, old: str, new: str) -> None:
            src, dst = old.strip("/"), new.strip("/")
            self._up(src)  # EROFS on a read-only mount
            if self._lower(src) == "dir":
                raise FuseOSError(errno.EXDEV)  # a stored folder is not moved whole: mv copies then removes
            up_src = self._copy_up(src)
            up_dst = self._parent_up(dst)
            with self.mutex:
                os.rename(up_src, up_dst)
                if self._lower(src) is not None:
                    self.gone.add(src)
                if self._lower(dst) is not None or dst in self.gone:
                    self.gone.discard(dst)

        def symlink(self, target: str, source: str) -> None:
            rel = target.strip("/")
            os.symlink(source, self._parent_up(rel))
            self._unhide(rel)

        def chmod(self, path: str, mode: int) -> None:
            os.chmod(self._copy_up(path.strip("/")), mode)

        def chown(self, path: str, uid: int, gid: int) -> None:
            os.chown(self._copy_up(path.strip("/")), uid, gid)

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> None:
            up = self._copy_up(path.strip("/"))
            if times is None:
                os.utime(up)
            else:
                os.utime(up, ns=times)

    return Overlay()


_AHEAD = 128  # files read ahead of the one opened, in the snapshot's order
_AHEAD_SIZE = 4 * 2**20  # only files up to this size: a large one is fetched when it is opened


class _Prefetch:
    """Sequential read-ahead over the snapshot: opening a file starts fetching the next `_AHEAD`
    small files in the manifest's order (the order `cp -r`, `tar` and `rsync` read a tree in), 16 at
    once on fscas's IO loop. An open waits for its file's fetch if it has started, and otherwise
    fetches the file itself. Listing fetches nothing."""

    def __init__(self, fs: FscasFileSystem) -> None:
        from fscas.runner import io_loop

        self.fs, self.loop = fs, io_loop()
        self.order = fs.manifest.paths
        self.index = {p.path: i for i, p in enumerate(self.order)}
        self.reached = 0  # everything before this index was offered once
        self.pending: dict[str, concurrent.futures.Future[object]] = {}
        self.started: set[str] = set()
        self.mutex = threading.Lock()
        self.slots: asyncio.Semaphore | None = None

    def opened(self, rel: str) -> None:
        i = self.index.get(rel)
        if i is None:
            return
        with self.mutex:
            start, end = max(i + 1, self.reached), min(len(self.order), i + 1 + _AHEAD)
            for p in self.order[start:end]:
                if p.size <= _AHEAD_SIZE and p.hash not in self.pending and self.fs.cache.get(p.hash, p.size) is None:
                    self.pending[p.hash] = asyncio.run_coroutine_threadsafe(self._one(p.hash, p.size), self.loop)
            self.reached = max(self.reached, end)

    async def _one(self, digest: str, size: int) -> object:
        if self.slots is None:
            self.slots = asyncio.Semaphore(16)
        async with self.slots:
            with self.mutex:
                self.started.add(digest)
            return await self.fs.cache.fetch(self.fs.store.aio.backend, digest, size)

    def wait(self, digest: str) -> None:
        with self.mutex:
            pending = self.pending.pop(digest, None)
            running = digest in self.started
            self.started.discard(digest)
        if pending is not None and running:
            with contextlib.suppress(Exception):  # the open fetches it again itself, and reports the error
                pending.result()


def require_fuse(what: str) -> None:
    """Raise `ConfigError` saying how to install fusepy and libfuse when they do not load."""
    try:
        import fuse  # noqa: F401 - fusepy and libfuse load here
    except (ImportError, OSError) as e:  # fusepy missing, or it found no libfuse
        raise ConfigError(f"{what} needs fusepy and libfuse 2 ({e}): pip install fusepy (in a checkout of fscas: "
                          "pip install -e '.[mount]'); Debian: apt-get install fuse3 libfuse2") from e
