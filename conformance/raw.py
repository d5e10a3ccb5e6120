"""Ground truth for the conformance suite: plain SDK / fsspec reads that bypass fscas's backends.

A backend that is consistently wrong (a key layout or a metadata mapping that its own reads undo)
would pass a suite that only reads through itself; these reads see what is really on the server.
"""

from __future__ import annotations

import os
from typing import Any

from fscas.backends import Backend

__all__ = ["RawBucket"]


class RawBucket:
    """Raw reads and writes of keys under a backend's root, with the backend's credentials."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        b: Any = backend  # each fscas backend class keeps its options and location as attributes
        self.kind = backend.url.split(":", 1)[0]
        self._fs: Any = None
        self._root = ""
        if self.kind == "file":
            self._root = str(b.root)
        elif self.kind == "s3":
            import s3fs

            o: Any = b.options
            self._fs = s3fs.S3FileSystem(key=o.key, secret=o.secret, token=o.token, anon=o.anon, profile=o.profile,
                                         endpoint_url=b.endpoint, skip_instance_cache=True, use_listings_cache=False,
                                         client_kwargs={"region_name": o.region or "us-east-1"})
        elif self.kind == "gs":
            from gcsfs.core import GCSFileSystem

            o = b.options
            self._fs = GCSFileSystem(endpoint_url=b.endpoint, token=o.token, skip_instance_cache=True,
                                     use_listings_cache=False)
        elif self.kind == "az":
            from adlfs import AzureBlobFileSystem

            o = b.options
            self._fs = AzureBlobFileSystem(account_name=o.account_name, connection_string=o.connection_string,
                                           account_key=o.account_key, sas_token=o.sas_token, skip_instance_cache=True)
        if self._fs is not None:
            bucket = b.container if self.kind == "az" else b.bucket
            self._root = f"{bucket}/{b.prefix}".rstrip("/")

    @property
    def independent(self) -> bool:
        """False for `memory://`, whose only reader is the backend itself."""
        return self.kind != "memory"

    def path(self, key: str) -> str:
        return f"{self._root}/{key}" if self.kind != "file" else os.path.join(self._root, *key.split("/"))

    def read(self, key: str) -> bytes:
        """The object's bytes as the server stores them; FileNotFoundError if absent."""
        if self.kind == "file":
            with open(self.path(key), "rb") as f:
                return f.read()
        if self.kind == "memory":
            return bytes(b_objects(self.backend)[key].data)
        return bytes(self._fs.cat_file(self.path(key)))

    def exists(self, key: str) -> bool:
        try:
            self.read(key)
        except (FileNotFoundError, KeyError):
            return False
        return True

    def write(self, key: str, data: bytes) -> None:
        """Write bytes under `key` with no fscas involved (to plant legacy or corrupt objects)."""
        if self.kind == "file":
            os.makedirs(os.path.dirname(self.path(key)), exist_ok=True)
            with open(self.path(key), "wb") as f:
                f.write(data)
        elif self.kind == "memory":
            import asyncio

            asyncio.run(self.backend.put(key, data))
        else:
            self._fs.pipe_file(self.path(key), data)

    def metadata(self, key: str) -> dict[str, str]:
        """User metadata under the names the server stores (no fscas mapping undone)."""
        if self.kind in ("file", "memory"):
            import asyncio

            return dict(asyncio.run(self.backend.head(key)).metadata)
        if self.kind == "s3":
            return dict(self._fs.metadata(self.path(key)))
        info = self._fs.info(self.path(key))
        meta = info.get("metadata") or {}
        return {k: v for k, v in meta.items() if k != "is_directory"}


def b_objects(backend: Backend) -> Any:
    """The memory backend's own dict: the only place its objects live."""
    return getattr(backend, "_objects")  # noqa: B009 - a private attribute of another package's class
