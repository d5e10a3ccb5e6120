"""A small SQLite file shared by processes: WAL, busy timeout, batched writes, corrupt-file recovery.

The local caches (hash cache, existence cache) are accelerators: a busy database is a miss and
a corrupt one is moved aside with a warning and started afresh; neither ever stops the caller.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["LocalDB"]

from fscas.errors import logger

log = logger("fscas.localdb")


class LocalDB:
    """One SQLite file with a fixed schema, safe to share between threads and processes.

    Args:
        path: the database file; created with its folder if missing.
        schema: `CREATE TABLE IF NOT EXISTS` statements, run on every open.
    """

    def __init__(self, path: str | os.PathLike[str], schema: Sequence[str]) -> None:
        self.path = os.fspath(path)
        self._schema = tuple(schema)
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        # Switching a new file to WAL takes an exclusive lock and answers "database is locked" at
        # once, without the busy timeout, when another process opens the same new file: retry.
        for attempt in range(20):
            try:
                return self._connect()
            except sqlite3.DatabaseError as e:
                if not _is_busy(e):
                    return self._start_afresh(e)
                if attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=60000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            for statement in self._schema:
                db.execute(statement)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header: fails if corrupt
        except BaseException:
            db.close()
            raise
        return db

    def _start_afresh(self, e: sqlite3.DatabaseError) -> sqlite3.Connection:
        aside = f"{self.path}.corrupt-{int(time.time())}-{os.getpid()}"
        warnings.warn(f"cache {self.path} is unreadable ({e}); moved to {aside}, starting afresh",
                      RuntimeWarning, stacklevel=4)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):  # another process may have moved it first
                os.replace(self.path + suffix, aside + suffix)
        return self._connect()

    def _recover(self, e: sqlite3.DatabaseError) -> None:
        """A statement failed: a busy database is just a miss; a corrupt one is replaced."""
        if _is_busy(e):
            log.warning("cache %s: busy, treated as a miss: %s", self.path, e)
            return
        with self._lock:
            self._db.close()
            self._db = self._start_afresh(e)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Rows of a SELECT; [] when the database is busy or had to be replaced."""
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            self._recover(e)
            return []

    def write_many(self, sql: str, rows: Iterable[Sequence[Any]], row: Callable[[Any], Sequence[Any]] | None = None
                   ) -> None:
        """Run `sql` for every row in one transaction; retries briefly while another process writes.

        With `row`, `rows` are items each mapped to its row as it is written: a million rows are
        then never all built at once.
        """
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return
        for attempt in range(5):
            try:
                with self._lock:
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        self._db.executemany(sql, rows if row is None else map(row, rows))
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
                    log.warning("cache %s: not updated: %s", self.path, e)
                    return
                time.sleep(0.2 * (attempt + 1))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


def _is_busy(e: sqlite3.DatabaseError) -> bool:
    return isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))
