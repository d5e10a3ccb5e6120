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

import contextlib
import errno
import os
import shutil
import stat
import threading
import time
from typing import TYPE_CHECKING, Any

from fscas.errors import FscasError
from fscas.packs import PACKED_MAX
from fscas.runner import run_sync

if TYPE_CHECKING:
    from fscas.fs import FscasFileSystem

__all__ = ["overlay_operations"]

def overlay_operations(fs: FscasFileSystem, upper: str | os.PathLike[str] | None, *, prefetch: bool = False) -> Any:
    """FUSE operations (fusepy's form, for `fuse_bridge.serve`) serving `fs`, with the local folder
    `upper` layered over it and writable, or read-only (every change EROFS) when `upper` is None.
    With `prefetch`, reading a file starts fetching the small files after it (`readahead`: `fscas mount`,
    where `cp -r` reads whole trees); a VIRTUAL session fetches only what the task opens."""
    from fscas.fuse_bridge import load
    from fscas.readahead import ReadAhead

    fuse = load()
    FuseOSError = fuse.FuseOSError

    ahead = ReadAhead(fs) if prefetch else None

    class Overlay(fuse.Operations):  # type: ignore[misc,name-defined]  # mfusepy's classes carry no types
        use_ns = True  # times cross as integer nanoseconds

        def __init__(self) -> None:
            self.upper = None if upper is None else os.fspath(upper)
            self.gone: set[str] = set()  # lower paths deleted (whiteouts, for this mount's life)
            self.mutex = threading.RLock()  # not `lock`: that name is FUSE's POSIX-lock operation
            self.modes = (0o644, 0o755) if self.upper is not None else (0o444, 0o555)
            self.opens_seen = False  # a read-only mount answers its first open with ENOSYS

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
            if self.upper is None and not self.opens_seen:
                # A snapshot needs no open: ENOSYS tells the kernel (4.14+) to stop sending opens, flushes
                # and releases, and a read names its file by path. That is half of a small file's trips.
                self.opens_seen = True
                raise FuseOSError(errno.ENOSYS)
            return self._open_lower(rel)

        def _lower_file(self, rel: str) -> Any:
            low = self._lower(rel)
            if low is None or low == "dir":
                raise FuseOSError(errno.ENOENT if low is None else errno.EISDIR)
            return low

        def _open_lower(self, rel: str) -> int:
            low = self._lower_file(rel)
            if ahead is not None:
                ahead.reading(rel, low.hash)
            return self._open_fetched(rel, low)

        def _open_fetched(self, rel: str, low: Any) -> int:
            try:  # fetched and verified on first open; a cached copy is opened without a trip to the IO loop
                hit = fs.cache.get(low.hash, low.size)
                return os.open(hit if hit is not None else fs.local_path(rel), os.O_RDONLY)
            except FscasError as e:
                raise FuseOSError(errno.EIO) from e

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            if fh:
                return os.pread(fh, size, offset)
            # No open came (see `open`): a read from the start does what an open would (wait for the
            # read-ahead, move it on); a small file read ahead is answered from memory, another small
            # one from its pack, anything else from the cached copy, fetched again if it was evicted.
            rel = path.strip("/")
            low = self._lower_file(rel)
            if ahead is not None:
                if not offset:
                    ahead.reading(rel, low.hash)
                if (data := ahead.take(low.hash, offset, size)) is not None:
                    return data
            if low.size <= PACKED_MAX:
                if (data := fs.cache.get_bytes(low.hash, low.size)) is None:
                    try:
                        data = run_sync(fs.cache.fetch_bytes(fs.store.aio.backend, low.hash, low.size))
                    except FscasError as e:
                        raise FuseOSError(errno.EIO) from e
                return data[offset:offset + size]
            fd = -1
            if offset:
                with contextlib.suppress(FileNotFoundError):
                    fd = os.open(fs.cache.path_of(low.hash), os.O_RDONLY)
            if fd < 0:
                fd = self._open_fetched(rel, low)
            try:
                return os.pread(fd, size, offset)
            finally:
                os.close(fd)

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
            if self.upper is None:
                raise FuseOSError(errno.ENOSYS)  # nothing to flush: the kernel stops asking

        def fsync(self, path: str, datasync: int, fh: int) -> None:
            os.fsync(fh)

        def release(self, path: str, fh: int) -> None:
            if fh:
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
