"""The last snapshot of a root, kept so that an unchanged tree re-snapshots at stat speed.

After a full snapshot, `save` records every folder walked and every file found with its stat key
(size, mtime_ns, ctime_ns, inode, device), its hash, the walk's skip reports and the encoded
manifest. `load` trusts the record only while every folder and file still has its recorded key:

- a folder's mtime changes whenever an entry is added, removed or renamed in it, so unchanged
  folders mean the walk would find the same names, and the same globs would pick the same files;
- an unchanged file key is what the hash cache trusts too (`fscas.manifests.hashcache`);
- links are resolved again on every load: a link's target can change without its folder changing.

A record is written only when nothing in it changed within `racy_window_ns` before the snapshot
began (git's "racy clean" rule, as in the hash cache): a change in the same timestamp tick as the
walk could otherwise leave every key equal. So a warm snapshot is exactly what a full one would
return. The file is a local accelerator: one marshal blob behind a checksum, written temp +
rename; anything unreadable, foreign or stale is a miss, never an error.

This module imports no attrs and builds no objects on the warm path: `fscas manifest snapshot`
of an unchanged tree loads it and writes the stored bytes (the CLI's fast path).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import stat as stat_mod
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import xxhash

__all__ = ["Record", "Saved", "load", "save", "state_path"]

_MAGIC = b"fscas-snapstate-1\n"  # bump when the walk policy or this layout changes
_KEEP = 64  # records kept per cache folder, least recently written removed first

_Key = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, dev (the hash cache's key)
_LinkSig = tuple[tuple[int, int, int, int, int, int], str, tuple[int, int, int, int, int, int] | None]
_DIR_FD = os.stat in os.supports_dir_fd and os.stat in os.supports_follow_symlinks
# Windows has no O_DIRECTORY and cannot open a folder at all: there each folder is stat'ed by path
# (the root followed, the rest not), and its names by path too. Chosen once, here.
_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0) if hasattr(os, "O_DIRECTORY") else None
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class Saved(NamedTuple):
    """What a full snapshot hands to `save`."""

    folders: Sequence[tuple[str, str, os.stat_result]]  # (path, rel prefix, stat) of every folder walked
    files: Sequence[tuple[str, str, _Key, str]]  # (rel, path opened, key, hash) of every entry
    skipped: Sequence[tuple[str, str]]  # (rel, reason) the walk reported
    data: bytes  # the encoded manifest
    total_size: int


class Record(NamedTuple):
    """A record that `load` found still valid."""

    data: bytes
    hash: str  # the manifest hash: xxh3_128 of `data`
    files: int
    total_size: int
    skipped: tuple[tuple[str, str], ...]
    folders: tuple[Any, ...]
    links: tuple[Any, ...]

    def entries(self) -> Iterable[tuple[str, str, int, int]]:
        """(rel, hash, size, mtime in µs) of every file, folder by folder."""
        for _path, prefix, _key, names, keys, hashes in self.folders:
            for name, key, digest in zip(names, keys, hashes, strict=True):
                yield prefix + name, digest, key[0], key[1] // 1000
        for _path, rel, _sig, digest, key in self.links:
            if digest is not None:
                yield rel, digest, key[0], key[1] // 1000


def state_path(cache_dir: str, root_abs: str, include: Sequence[str], exclude: Sequence[str]) -> str:
    """Where the record of `root_abs` snapshotted with these globs lives under `cache_dir`."""
    ident = marshal.dumps((root_abs, tuple(include), tuple(exclude)))
    return os.path.join(cache_dir, "snapshots", xxhash.xxh3_128_hexdigest(ident) + ".state")


def load(path: str, root_abs: str, include: Sequence[str], exclude: Sequence[str]) -> Record | None:
    """The record at `path` if it describes `root_abs` with these globs and nothing has changed."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    head = len(_MAGIC) + 8
    if blob[: len(_MAGIC)] != _MAGIC or xxhash.xxh3_64_digest(memoryview(blob)[head:]) != blob[len(_MAGIC) : head]:
        return None
    try:
        ident, folders, links, skipped, data, files, total = marshal.loads(memoryview(blob)[head:])
    except (ValueError, EOFError, TypeError):
        return None
    if ident != (root_abs, tuple(include), tuple(exclude)) or not _folders_unchanged(folders):
        return None
    for link_path, _rel, sig, _digest, _key in links:
        if _link_signature(link_path) != sig:
            return None
    return Record(data, xxhash.xxh3_128_hexdigest(data), files, total, skipped, folders, links)


def _folders_unchanged(folders: tuple[Any, ...]) -> bool:
    if _OPEN_FOLDER is None:
        return _folders_unchanged_by_path(folders)
    stat, lstat = os.stat, os.lstat
    for i, (path, _prefix, key, names, keys, _hashes) in enumerate(folders):
        # The root may be a link to a folder (it is followed, as the walk does); nothing below it is.
        try:
            fd = os.open(path, _OPEN_FOLDER | (_NOFOLLOW if i else 0))
        except OSError:
            return False
        try:
            s = os.fstat(fd)
            if (s.st_mtime_ns, s.st_ctime_ns, s.st_ino, s.st_dev) != key:
                return False
            if _DIR_FD:
                for name, k in zip(names, keys, strict=True):
                    s = stat(name, dir_fd=fd, follow_symlinks=False)
                    if (s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino, s.st_dev) != k:
                        return False
            else:
                for name, k in zip(names, keys, strict=True):
                    s = lstat(os.path.join(path, name))
                    if (s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino, s.st_dev) != k:
                        return False
        except OSError:
            return False
        finally:
            os.close(fd)
    return True


def _folders_unchanged_by_path(folders: tuple[Any, ...]) -> bool:
    """`_folders_unchanged` where a folder cannot be opened (Windows): the same keys, read by path.
    A folder swapped for a link shows as the link's own stat (lstat), so its key no longer matches."""
    for i, (path, _prefix, key, names, keys, _hashes) in enumerate(folders):
        try:
            s = os.stat(path) if i == 0 else os.lstat(path)
            if not stat_mod.S_ISDIR(s.st_mode) or (s.st_mtime_ns, s.st_ctime_ns, s.st_ino, s.st_dev) != key:
                return False
            for name, k in zip(names, keys, strict=True):
                s = os.lstat(os.path.join(path, name))
                if (s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino, s.st_dev) != k:
                    return False
        except OSError:
            return False
    return True


def _sig(st: os.stat_result) -> tuple[int, int, int, int, int, int]:
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _link_signature(path: str) -> _LinkSig | None:
    """The link itself, where it resolves to, and what is there: equal signatures, equal walk verdicts."""
    try:
        own = os.lstat(path)
        target = os.path.realpath(path)
        try:
            there: tuple[int, int, int, int, int, int] | None = _sig(os.stat(target))
        except FileNotFoundError:
            there = None
    except OSError:
        return None
    return (_sig(own), target, there)


def save(path: str, root_abs: str, include: Sequence[str], exclude: Sequence[str], saved: Saved, *,
         started_ns: int, racy_window_ns: int) -> bool:
    """Write the record of a full snapshot that began at `started_ns`; False if it is not kept.

    Not kept when any folder, file or link changed within `racy_window_ns` of `started_ns` (or
    after it), or a path vanished meanwhile: then the next snapshot walks again.
    """
    limit = started_ns - racy_window_ns
    by_folder: dict[str, tuple[list[str], list[_Key], list[str]]] = {p: ([], [], []) for p, _, _ in saved.folders}
    links: list[tuple[str, str, _LinkSig, str | None, _Key | None]] = []
    root_s = saved.folders[0][0] if saved.folders else root_abs
    for rel, opened, key, digest in saved.files:
        if max(key[1], key[2]) >= limit:
            return False
        own = os.path.join(root_s, *rel.split("/"))
        if opened == own:
            if (lists := by_folder.get(os.path.dirname(opened))) is None:
                return False
            names, keys, hashes = lists
            names.append(os.path.basename(opened))
            keys.append(key)
            hashes.append(digest)
        elif not _add_link(links, own, rel, digest, key, limit):
            return False
    for rel, _why in saved.skipped:
        own = os.path.join(root_s, *rel.split("/"))
        try:
            is_link = stat_mod.S_ISLNK(os.lstat(own).st_mode)
        except OSError:
            return False  # vanished during the snapshot
        if is_link and not _add_link(links, own, rel, None, None, limit):
            return False
    folders: list[Any] = []
    for folder, prefix, st in saved.folders:
        if max(st.st_mtime_ns, st.st_ctime_ns) >= limit:
            return False
        names, keys, hashes = by_folder[folder]
        folders.append((folder, prefix, (st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev), tuple(names),
                        tuple(keys), tuple(hashes)))
    payload = marshal.dumps(((root_abs, tuple(include), tuple(exclude)), tuple(folders), tuple(links),
                             tuple(saved.skipped), saved.data, len(saved.files), saved.total_size))
    _write(path, _MAGIC + xxhash.xxh3_64_digest(payload), payload)  # not joined: no second copy
    return True


def _add_link(links: list[tuple[str, str, _LinkSig, str | None, _Key | None]], own: str, rel: str,
              digest: str | None, key: _Key | None, limit: int) -> bool:
    sig = _link_signature(own)
    if sig is None or max(sig[0][2], sig[0][3]) >= limit or (sig[2] is not None and max(sig[2][2], sig[2][3]) >= limit):
        return False
    links.append((own, rel, sig, digest, key))
    return True


def _write(path: str, *blobs: bytes) -> None:
    """Temp + rename (readers see the old record or the new one), then drop the oldest records."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    temp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temp, "wb") as f:
            for blob in blobs:
                f.write(blob)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        return
    _prune(folder)


def _prune(folder: str) -> None:
    try:
        with os.scandir(folder) as it:
            records = [(e.stat().st_mtime_ns, e.path) for e in it if e.name.endswith(".state")]
    except OSError:
        return
    for _, old in sorted(records)[:-_KEEP]:
        with contextlib.suppress(OSError):
            os.unlink(old)
