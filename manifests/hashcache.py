"""A local SQLite cache of file hashes that cannot return a stale hash.

An entry is used only when path, size, mtime_ns, ctime_ns, inode and device all still match.
Deadline keys on a local-time mtime string and ignores size (defect D1, D6); restoring a file's
mtime after changing it still changes its ctime, which only the kernel can set.

A hash is cached only when the file's ctime is older than the read by more than `racy_window_ns`
(git's "racy clean" rule): a write that lands in the same timestamp tick as our read would
otherwise leave every stat field unchanged.

Several processes may share one file (WAL, busy timeout). A corrupt file is moved aside with a
warning and a fresh cache is started: a cache must never stop a snapshot.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from fscas.manifests.cachedir import default_cache_dir
from fscas.manifests.hashing import FileDigest
from fscas.manifests.localdb import LocalDB

if TYPE_CHECKING:
    from fscas.manifests.walker import FileStat

__all__ = ["HashCache", "default_cache_dir"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS hashes_v1(path BLOB PRIMARY KEY, size INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,"
    " dev INTEGER NOT NULL, hash TEXT NOT NULL) WITHOUT ROWID"
)
_Key = tuple[int, int, int, int, int]


class HashCache:
    """Maps absolute file paths to hashes, valid only while the file's stat is unchanged.

    Args:
        path: the database file; created with its folder if missing.
        racy_window_ns: how much older than the read a file's ctime must be to be cached.
    """

    def __init__(self, path: str | os.PathLike[str], *, racy_window_ns: int = 2_000_000_000) -> None:
        self.path = os.fspath(path)
        self.racy_window_ns = racy_window_ns
        self._db = LocalDB(self.path, [_SCHEMA])

    def __repr__(self) -> str:
        return f"HashCache({self.path!r})"

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load_under(self, folder: str) -> dict[str, tuple[_Key, str]]:
        """Return every entry whose path lies under the absolute `folder`, in one range query.

        Keys are `os.fsdecode`d paths, as `os.scandir` yields them.
        """
        lo = os.fsencode(folder.rstrip("/")) + b"/"
        hi = lo[:-1] + b"0"  # "0" is the byte after "/"
        rows = self._db.query("SELECT path, size, mtime_ns, ctime_ns, inode, dev, hash FROM hashes_v1"
                              " WHERE path >= ? AND path < ?", (lo, hi))
        enc, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # = os.fsdecode
        return {r[0].decode(enc, errors): ((r[1], r[2], r[3], r[4], r[5]), r[6]) for r in rows}

    def get(self, path: str, st: os.stat_result | FileStat) -> str | None:
        """Return the cached hash of `path` if its stat still matches, else None."""
        rows = self._db.query("SELECT size, mtime_ns, ctime_ns, inode, dev, hash FROM hashes_v1 WHERE path = ?",
                              (os.fsencode(path),))
        if not rows or tuple(rows[0][:5]) != stat_key(st):
            return None
        return str(rows[0][5])

    def cacheable(self, d: FileDigest, read_at_ns: int) -> bool:
        """True unless the file changed so shortly before `read_at_ns` that a later write could hide."""
        return max(d.ctime_ns, d.mtime_ns) < read_at_ns - self.racy_window_ns

    def put_many(self, items: Iterable[tuple[str, _Key, str]]) -> None:
        """Record (path, stat key, hash) triples in one transaction; retries briefly if another
        process holds the lock."""
        self._db.write_many("INSERT OR REPLACE INTO hashes_v1 VALUES (?,?,?,?,?,?,?)", items, _row)


def _row(item: tuple[str, _Key, str]) -> tuple[bytes, int, int, int, int, int, str]:
    path, key, digest = item
    return (os.fsencode(path), *key, digest)


def stat_key(st: os.stat_result | FileStat) -> _Key:
    """The stat fields an entry is keyed on."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)

