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

import contextlib
import logging
import os
import sqlite3
import sys
import threading
import time
import warnings
from collections.abc import Iterable

from fscas.manifests.hashing import FileDigest

__all__ = ["HashCache", "default_cache_dir"]

log = logging.getLogger("fscas.hashcache")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS hashes_v1(path BLOB PRIMARY KEY, size INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,"
    " dev INTEGER NOT NULL, hash TEXT NOT NULL) WITHOUT ROWID"
)
_Key = tuple[int, int, int, int, int]


def default_cache_dir() -> str:
    """`$XDG_CACHE_HOME/fscas`, or `~/.cache/fscas`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fscas")


def _key(d: FileDigest) -> _Key:
    return (d.size, d.mtime_ns, d.ctime_ns, d.inode, d.dev)


class HashCache:
    """Maps absolute file paths to hashes, valid only while the file's stat is unchanged.

    Args:
        path: the database file; created with its folder if missing.
        racy_window_ns: how much older than the read a file's ctime must be to be cached.
    """

    def __init__(self, path: str | os.PathLike[str], *, racy_window_ns: int = 2_000_000_000) -> None:
        self.path = os.fspath(path)
        self.racy_window_ns = racy_window_ns
        self._lock = threading.Lock()
        self._db = self._open()

    def __repr__(self) -> str:
        return f"HashCache({self.path!r})"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout=60000")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        db.execute("SELECT count(*) FROM (SELECT 1 FROM hashes_v1 LIMIT 1)").fetchone()
        return db

    def _open(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError as e:
            if _is_busy(e):
                raise
            return self._start_afresh(e)

    def _recover(self, e: sqlite3.DatabaseError) -> None:
        """A query failed: a busy database is just a miss; a corrupt one is replaced."""
        if _is_busy(e):
            log.warning("hash cache %s: busy, treated as a miss: %s", self.path, e)
            return
        with self._lock:
            self._db.close()
            self._db = self._start_afresh(e)

    def _start_afresh(self, e: sqlite3.DatabaseError) -> sqlite3.Connection:
        aside = f"{self.path}.corrupt-{int(time.time())}-{os.getpid()}"
        warnings.warn(f"hash cache {self.path} is unreadable ({e}); moved to {aside}, starting afresh",
                      RuntimeWarning, stacklevel=3)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):  # another process may have moved it first
                os.replace(self.path + suffix, aside + suffix)
        return self._connect()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
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
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT path, size, mtime_ns, ctime_ns, inode, dev, hash FROM hashes_v1"
                    " WHERE path >= ? AND path < ?", (lo, hi)).fetchall()
        except sqlite3.DatabaseError as e:
            self._recover(e)
            return {}
        enc, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # = os.fsdecode
        return {r[0].decode(enc, errors): ((r[1], r[2], r[3], r[4], r[5]), r[6]) for r in rows}

    def get(self, path: str, st: os.stat_result) -> str | None:
        """Return the cached hash of `path` if its stat still matches, else None."""
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT size, mtime_ns, ctime_ns, inode, dev, hash FROM hashes_v1 WHERE path = ?",
                    (os.fsencode(path),)).fetchone()
        except sqlite3.DatabaseError as e:
            self._recover(e)
            return None
        if row is None or tuple(row[:5]) != stat_key(st):
            return None
        return str(row[5])

    def cacheable(self, d: FileDigest, read_at_ns: int) -> bool:
        """True unless the file changed so shortly before `read_at_ns` that a later write could hide."""
        return max(d.ctime_ns, d.mtime_ns) < read_at_ns - self.racy_window_ns

    def put_many(self, items: Iterable[tuple[str, FileDigest]]) -> None:
        """Record digests in one transaction; retries briefly if another process holds the lock."""
        rows = [(os.fsencode(p), *_key(d), d.hash) for p, d in items]
        if not rows:
            return
        for attempt in range(5):
            try:
                with self._lock:
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        self._db.executemany("INSERT OR REPLACE INTO hashes_v1 VALUES (?,?,?,?,?,?,?)", rows)
                        self._db.execute("COMMIT")
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise
                return
            except sqlite3.DatabaseError as e:
                if not _is_busy(e):
                    self._recover(e)
                    return
                if attempt == 4:
                    log.warning("hash cache %s: not updated: %s", self.path, e)
                    return
                time.sleep(0.2 * (attempt + 1))


def stat_key(st: os.stat_result) -> _Key:
    """The stat fields an entry is keyed on."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _is_busy(e: sqlite3.DatabaseError) -> bool:
    return isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))
