"""The existence cache: which Data keys a store was seen to hold, so re-uploads ask the server little.

Keyed by store identity (the backend's credential-free URL: scheme, endpoint, bucket, prefix) and
key, not by bucket/key alone as Deadline's s3_check_cache is (defect D6). An entry is written only
after the server confirmed the object (a HEAD, a listing, or a successful PUT), never for a skipped
or failed upload (defect D2), and expires after 30 days like Deadline's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from fscas.manifests.cachedir import default_cache_dir
from fscas.manifests.localdb import LocalDB

__all__ = ["ExistenceCache"]

MAX_AGE = 30 * 86400  # Deadline's s3_check_cache expiry
_SCHEMA = ("CREATE TABLE IF NOT EXISTS present_v1(store TEXT NOT NULL, key TEXT NOT NULL, seen REAL NOT NULL,"
           " PRIMARY KEY(store, key)) WITHOUT ROWID",
           "CREATE TABLE IF NOT EXISTS epoch_v1(store TEXT PRIMARY KEY, epoch TEXT NOT NULL) WITHOUT ROWID")


class ExistenceCache:
    """Keys seen present per store, younger than `max_age` seconds."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, max_age: float = MAX_AGE) -> None:
        self.path = os.fspath(path) if path is not None else os.path.join(default_cache_dir(), "existence.db")
        self.max_age = max_age
        self._db = LocalDB(self.path, _SCHEMA)

    def __repr__(self) -> str:
        return f"ExistenceCache({self.path!r})"

    def present(self, store: str) -> set[str]:
        """Every key of `store` seen within `max_age`."""
        rows = self._db.query("SELECT key FROM present_v1 WHERE store = ? AND seen > ?",
                              (store, time.time() - self.max_age))
        return {r[0] for r in rows}

    def add(self, store: str, keys: Iterable[str]) -> None:
        """Record `keys` as confirmed present now."""
        now = time.time()
        self._db.write_many("INSERT OR REPLACE INTO present_v1 VALUES (?,?,?)", [(store, k, now) for k in keys])

    def forget(self, store: str, keys: Iterable[str] | None = None) -> None:
        """Drop `keys` of `store` (all of them when None), e.g. after gc deleted them."""
        if keys is None:
            self._db.write_many("DELETE FROM present_v1 WHERE store = ?", [(store,)])
        else:
            self._db.write_many("DELETE FROM present_v1 WHERE store = ? AND key = ?", [(store, k) for k in keys])

    def epoch(self, store: str) -> str | None:
        """The store epoch the entries of `store` were recorded under (see `AsyncStore`)."""
        rows = self._db.query("SELECT epoch FROM epoch_v1 WHERE store = ?", (store,))
        return str(rows[0][0]) if rows else None

    def set_epoch(self, store: str, epoch: str) -> None:
        """Record the store's current epoch."""
        self._db.write_many("INSERT OR REPLACE INTO epoch_v1 VALUES (?,?)", [(store, epoch)])

    def close(self) -> None:
        """Close the database."""
        self._db.close()
