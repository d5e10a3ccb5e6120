"""Ground truth for the conformance suite: plain SDK / fsspec reads that bypass fscas's backends.

A backend that is consistently wrong (a key layout or a metadata mapping that its own reads undo)
would pass a suite that only reads through itself; these reads see what is really on the server.
fscas's own backends are read through their clouds' SDKs (or the folder itself); any other backend
through its `raw()` hook (`fscas.backends.base.RawAccess`). A backend with neither makes the checks
that need ground truth "not supported", with the reason.
"""

from __future__ import annotations

import os
from typing import Any

from fscas.backends import Backend, Raw, RawAccess
from fscas.errors import NotSupported

__all__ = ["RawBucket"]


class RawBucket:
    """Raw reads and writes of keys under a backend's root, with the backend's credentials."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        b: Any = backend  # each fscas backend class keeps its options and location as attributes
        self.kind = backend.url.split(":", 1)[0]
        self._fs: Any = None
        self._root = ""
        self.generic = type(backend).__name__ == "FsspecBackend"
        self._hook: Raw | None = None
        own = type(backend).__module__.startswith("fscas.backends.")  # not a plugin serving the same scheme
        if not self.generic and (not own or self.kind not in ("file", "s3", "gs", "az")):
            if not isinstance(backend, RawAccess):
                self.kind = "none"
                return
            self._hook, self.kind = backend.raw(), "hook"
        elif self.generic:  # plain fsspec on the same server, beside fscas's generic backend
            self._fs, self._root = b.plain_filesystem()
            self.kind = "fsspec"
        elif self.kind == "file":
            self._root = str(b.root)
        elif self.kind == "s3":  # boto3, not s3fs: s3fs closes its session from a finalizer, on any loop
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config

            o: Any = b.options
            session = boto3.Session(profile_name=o.profile) if o.profile else boto3.Session()
            self._s3 = session.client(
                "s3", endpoint_url=b.endpoint, region_name=o.region or "us-east-1", aws_access_key_id=o.key,
                aws_secret_access_key=o.secret, aws_session_token=o.token,
                config=Config(signature_version=UNSIGNED if o.anon else None, s3={"addressing_style": "path"}
                              if b.endpoint else {}, request_checksum_calculation="when_required"))
            self._bucket, self._root = b.bucket, b.prefix
        elif self.kind == "gs":
            from gcsfs.core import GCSFileSystem

            o = b.options
            self._fs = GCSFileSystem(endpoint_url=b.endpoint, token=o.token, skip_instance_cache=True,
                                     use_listings_cache=False)
        elif self.kind == "az":
            # The native SDK, not adlfs: fsspec path handling drops '?' and '#' from blob names.
            from azure.storage.blob import BlobServiceClient

            o = b.options
            if o.connection_string:
                service = BlobServiceClient.from_connection_string(o.connection_string)
            else:
                credential = ({"account_name": o.account_name, "account_key": o.account_key} if o.account_key
                              else o.sas_token)
                url = o.endpoint_url or f"https://{o.account_name}.blob.core.windows.net"
                service = BlobServiceClient(url, credential=credential)
            self._container = service.get_container_client(b.container)
            self._root = b.prefix
        if self._fs is not None and not self.generic:
            bucket = b.bucket
            self._root = f"{bucket}/{b.prefix}".rstrip("/")

    def close(self) -> None:
        """Let go of the SDK clients (in a thread with no event loop running: gcsfs closes its session
        from a finalizer)."""
        self._fs = None
        if self.kind == "s3":
            self._s3.close()

    def _unknown(self) -> NotSupported:
        return NotSupported(f"{self.backend.url.split(':', 1)[0]}:// offers no raw access to check what is really "
                            "stored (a backend gives it with raw(): fscas.backends.base.RawAccess)")

    def path(self, key: str) -> str:
        if self.kind == "file":
            return os.path.join(self._root, *key.split("/"))
        if self.generic:
            b: Any = self.backend
            return str(b.path_of(key))
        return f"{self._root}/{key}".lstrip("/")

    def read(self, key: str) -> bytes:
        """The object's bytes as the server stores them; FileNotFoundError if absent.

        Raises:
            NotSupported: the backend offers no raw access.
        """
        if self._hook is not None:
            return bytes(self._hook.read(key))
        if self.kind == "none":
            raise self._unknown()
        if self.kind == "file":
            with open(self.path(key), "rb") as f:
                return f.read()
        if self.kind == "az":
            from azure.core.exceptions import ResourceNotFoundError

            try:
                return bytes(self._container.download_blob(self.path(key)).readall())
            except ResourceNotFoundError:
                raise FileNotFoundError(key) from None
        if self.kind == "s3":
            try:
                return bytes(self._s3.get_object(Bucket=self._bucket, Key=self.path(key))["Body"].read())
            except self._s3.exceptions.NoSuchKey:
                raise FileNotFoundError(key) from None
        return bytes(self._fs.cat_file(self.path(key)))

    def exists(self, key: str) -> bool:
        try:
            self.read(key)
        except (FileNotFoundError, KeyError):
            return False
        return True

    def write(self, key: str, data: bytes) -> None:
        """Write bytes under `key` with no fscas involved (to plant legacy or corrupt objects)."""
        if self._hook is not None:
            self._hook.write(key, data)
        elif self.kind == "none":
            raise self._unknown()
        elif self.kind == "file":
            os.makedirs(os.path.dirname(self.path(key)), exist_ok=True)
            with open(self.path(key), "wb") as f:
                f.write(data)
        elif self.kind == "az":
            self._container.upload_blob(self.path(key), data, overwrite=True)
        elif self.kind == "s3":
            self._s3.put_object(Bucket=self._bucket, Key=self.path(key), Body=data)
        elif self.generic:
            self._fs.makedirs(self.path(key).rsplit("/", 1)[0], exist_ok=True)
            self._fs.pipe_file(self.path(key), data)
        else:
            self._fs.pipe_file(self.path(key), data)

    def metadata(self, key: str) -> dict[str, str]:
        """User metadata under the names the server stores (no fscas mapping undone)."""
        if self._hook is not None:
            return dict(self._hook.metadata(key))
        if self.kind == "none":
            raise self._unknown()
        if self.generic:
            b: Any = self.backend
            if b.metadata_sidecars:  # the sidecar object, read as stored
                import json

                return dict(json.loads(self._fs.cat_file(b.path_of(key, sidecar=True))))
            return {k.lower(): v for k, v in self._fs.metadata(self.path(key)).items()}
        if self.kind == "file":
            import asyncio

            return dict(asyncio.run(self.backend.head(key)).metadata)
        if self.kind == "s3":
            return dict(self._s3.head_object(Bucket=self._bucket, Key=self.path(key))["Metadata"])
        if self.kind == "az":
            return dict(self._container.get_blob_client(self.path(key)).get_blob_properties().metadata or {})
        info = self._fs.info(self.path(key))
        return dict(info.get("metadata") or {})
