"""The content cache's small objects, packed: appended to a file, not each made a file of its own.

Reading a tree of small files through `fscas mount` would otherwise create one cache file per
object (create, write, close, rename, chmod: metadata operations on the cache's file system, the
dearest thing a small file costs) beside the file the reader writes itself. Packed, an object
costs two appends: its bytes to the pack, its entry to the pack's index.

Layout: `<cache>/packs/<host>-<pid>-<random>.pack` (objects back to back) and `.idx` beside it
(32-byte entries: the digest's 16 bytes, offset, size; little-endian). A pack has one writer, the
process that made it, and every process reads every pack: the indexes are read at first use and
read on from where they were left when a lookup misses. An entry counts only if its bytes hash to
its digest when read, so a torn append (a crash, a full disk) reads as a miss, never as data.
Eviction removes a whole pack (its mtime is its last use), never the one being written.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
from pathlib import Path

import xxhash

from fscas.errors import logger
from fscas.files import temp_prefix

__all__ = ["PACKED_MAX", "Packs"]

PACKED_MAX = 128 * 2**10  # packed objects are at most one FUSE read (128 KiB)
_PACK_SIZE = 64 * 2**20  # a pack is closed at this size: eviction's unit
_ENTRY = struct.Struct("<16sQQ")
log = logger(__name__)
_TOUCH = 60.0  # seconds between marking a pack used again
_RESCAN = 1.0  # seconds between looks at other processes' indexes on a miss
_KEPT_OPEN = 128  # packs kept open for reading; past that (many sessions' packs), opened per read


class Packs:
    """The packs under `folder`, shared by every process that opens the same cache."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._index: dict[bytes, tuple[str, int, int]] = {}  # digest -> (pack, offset, size)
        self._keys: dict[str, list[bytes]] = {}  # per pack, the digests `_index` points into it for
        self._read_to: dict[str, int] = {}  # index bytes taken in, per pack
        self._fds: dict[str, int] = {}  # open for reading, per pack
        self._touched: dict[str, float] = {}
        self._writing: tuple[str, int, int] | None = None  # this process's pack: name, pack fd, index fd
        self._written = 0
        self._scanned = float("-inf")

    def get(self, digest: str, size: int) -> bytes | None:
        """The packed bytes of `digest` (verified), or None."""
        key = bytes.fromhex(digest)
        with self._lock:
            found = self._index.get(key)
            if found is None and time.monotonic() - self._scanned >= _RESCAN:  # a miss per file of a
                self._scan()  # cold tree must not each read every index
                found = self._index.get(key)
            if found is None or found[2] != size:
                return None
            name, offset, _ = found
            fd, kept = self._fds.get(name), True
            if fd is None:
                try:
                    fd = os.open(self.folder / f"{name}.pack", os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:  # evicted by another process
                    self._forget(name)
                    return None
                except OSError:  # out of descriptors, say: a miss, not an error
                    return None
                kept = len(self._fds) < _KEPT_OPEN
                if kept:
                    self._fds[name] = fd
            now = time.monotonic()
            touch = now - self._touched.get(name, -_TOUCH) >= _TOUCH
            if touch:
                self._touched[name] = now
        try:
            data = os.pread(fd, size, offset)
        except OSError:  # closed under us by an eviction: a miss
            return None
        finally:
            if not kept:
                os.close(fd)
        if len(data) != size or xxhash.xxh3_128_digest(data) != key:
            with self._lock:  # torn or overwritten: a miss from now on
                if self._index.get(key) == found:
                    del self._index[key]
            return None
        if touch:
            with contextlib.suppress(OSError):
                os.utime(self.folder / f"{name}.pack")
        return data

    def put(self, digest: str, data: bytes) -> bool:
        """Append verified `data` of `digest` to this process's pack; whether it is packed now.

        A failed append (a full disk, a cache folder that cannot be written) keeps nothing and closes
        the pack, whose offsets could no longer be trusted: the caller still has the bytes, and the
        next object starts a new pack.
        """
        key = bytes.fromhex(digest)
        with self._lock:
            if key in self._index:
                return True
            try:
                if self._writing is None or self._written >= _PACK_SIZE:
                    self._open_pack()
                assert self._writing is not None
                name, pack_fd, index_fd = self._writing
                offset = self._written
                view = memoryview(data)
                while view:
                    view = view[os.write(pack_fd, view):]
                self._written += len(data)
                os.write(index_fd, _ENTRY.pack(key, offset, len(data)))  # after the bytes: never ahead of them
            except OSError as e:
                log.debug("%s: not packed (%s); this pack takes no more", self.folder, e)
                self._close_writing()
                return False
            self._index[key] = (name, offset, len(data))
            self._keys.setdefault(name, []).append(key)
            self._read_to[name] = self._read_to.get(name, 0) + _ENTRY.size
            return True

    def _open_pack(self) -> None:
        self._close_writing()
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{temp_prefix().strip('.-')}-{os.urandom(6).hex()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        pack_fd = os.open(self.folder / f"{name}.pack", flags, 0o444)
        try:
            index_fd = os.open(self.folder / f"{name}.idx", flags, 0o444)
        except OSError:
            os.close(pack_fd)
            with contextlib.suppress(OSError):
                os.unlink(self.folder / f"{name}.pack")
            raise
        self._writing = (name, pack_fd, index_fd)
        self._read_to[name] = 0

    def _close_writing(self) -> None:
        """No more appends to this process's pack: it becomes one like the others (evictable)."""
        if self._writing is not None:
            for fd in self._writing[1:]:
                os.close(fd)
            self._writing = None
        self._written = 0

    def _scan(self) -> None:
        """Take in the index entries appended since the last scan, by every process."""
        self._scanned = time.monotonic()
        try:
            names = [e.name[:-4] for e in os.scandir(self.folder) if e.name.endswith(".idx")]
        except OSError:  # no packs yet, or a folder this process may not read: nothing packed to see
            return
        for name in names:
            start = self._read_to.get(name, 0)
            try:
                with open(self.folder / f"{name}.idx", "rb") as f:
                    f.seek(start)
                    raw = f.read()
            except OSError:  # evicted meanwhile, or not ours to read
                continue
            raw = raw[:len(raw) - len(raw) % _ENTRY.size]  # an entry being appended: taken next time
            keys = self._keys.setdefault(name, [])
            for key, offset, size in _ENTRY.iter_unpack(raw):
                if key not in self._index:
                    self._index[key] = (name, offset, size)
                    keys.append(key)
            self._read_to[name] = start + len(raw)

    def _forget(self, name: str) -> None:
        # By the pack's own digests: an eviction of a full cache costs one pack, not all of them.
        for key in self._keys.pop(name, ()):
            if (found := self._index.get(key)) is not None and found[0] == name:
                del self._index[key]
        self._read_to.pop(name, None)
        self._touched.pop(name, None)
        if (fd := self._fds.pop(name, None)) is not None:
            os.close(fd)

    def digests(self) -> set[str]:
        """Every packed digest, as the indexes say."""
        with self._lock:
            self._scan()
            return {k.hex() for k in self._index}

    def units(self) -> list[tuple[float, int, str]]:
        """(mtime, bytes, name) of every pack but the one this process writes: eviction's candidates."""
        writing = self._writing[0] if self._writing else None
        found = []
        with contextlib.suppress(OSError):  # no packs folder (yet), or not one this process may read
            for e in os.scandir(self.folder):
                if e.name.endswith(".pack") and e.name[:-5] != writing:
                    with contextlib.suppress(OSError):
                        st = e.stat()
                        found.append((st.st_mtime, st.st_size, e.name[:-5]))
        return found

    @property
    def written(self) -> int:
        """Bytes in the pack this process is writing."""
        return self._written

    def remove(self, name: str) -> None:
        """Delete pack `name` and its index."""
        with self._lock:
            self._forget(name)
            for suffix in (".idx", ".pack"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.folder / f"{name}{suffix}")

    def clear(self) -> None:
        """Delete every pack, this process's too (the next put starts a new one)."""
        with self._lock:
            self._close_writing()
        for _, _, name in self.units():
            self.remove(name)
