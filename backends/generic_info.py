"""What fsspec filesystems report, and how each names itself: the generic backend's reading of them.

Identities (a credential-free URL per store), WebDAV URLs made into webdav4's `base_url` and
`auth`, the checksums and mtimes each implementation puts in `info` under its own field names,
and how a filesystem fscas made is closed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import urllib.parse
import weakref
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from fscas.backends.url import Location
from fscas.errors import redact

__all__ = ["INTEGRITY", "WEBDAV", "close_fs", "finalize_on_own_loop", "identity_of", "info_checksums", "info_etag",
           "info_mtime", "made", "protocol_of", "typed_options", "url_identity", "webdav_options"]

WEBDAV = {"webdav+https": "https", "webdav+http": "http", "davs": "https", "dav": "http", "webdav": "https"}


async def close_fs(fs: Any) -> None:
    """Close a filesystem fscas made: SSH connections, HTTP clients, FTP sessions."""
    finalize_on_own_loop(fs)  # s3fs registers its finalizer at first use, not when made
    if hasattr(fs, "_pool") and hasattr(fs, "_stack"):  # sshfs
        async def finish() -> None:
            await fs._pool.close()
            await fs._stack.aclose()
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(finish(), fs.loop))
    elif hasattr(fs, "client") and hasattr(fs.client, "close"):  # webdav4's httpx client
        await asyncio.to_thread(fs.client.close)
    elif hasattr(fs, "ftp"):
        await asyncio.to_thread(fs.ftp.close)


def finalize_on_own_loop(fs: Any) -> Any:
    """Make the finalizers an async filesystem registered on itself run on the filesystem's loop; returns `fs`.

    sshfs and s3fs close a collected instance from a `weakref.finalize` that, on a thread with an event
    loop running, schedules the close on *that* loop (`asyncio.get_running_loop()`), not on fsspec's
    loop that owns the connection. The collector runs finalizers on whichever thread allocates, so a
    filesystem collected while a caller's loop runs leaves that loop a task awaiting another loop's
    futures: at `asyncio.run`'s shutdown it can wait forever (seen: a conformance check hung 600 s).
    """
    loop = getattr(fs, "_loop", None)  # fsspec's AsyncFileSystem keeps its loop there
    if not isinstance(loop, asyncio.AbstractEventLoop):
        return fs
    registry: dict[Any, Any] = getattr(weakref.finalize, "_registry", {})  # the stdlib keeps no other index
    for finalizer in [f for f in list(registry) if (held := f.peek()) is not None and held[0] is fs]:
        detached = finalizer.detach()
        if detached is not None:
            _, func, args, kwargs = detached
            weakref.finalize(fs, _on_loop, loop, functools.partial(func, *args, **kwargs))
    return fs


def made(fs: Any) -> Any:
    """A filesystem fscas made, safe to let go of on any thread: its finalizers run on its own loop."""
    if type(fs).__module__.split(".")[0] == "s3fs":
        fs.connect()  # s3fs opens its client, and registers the finalizer that closes it, on first use
    return finalize_on_own_loop(fs)


def _on_loop(loop: asyncio.AbstractEventLoop, finish: functools.partial[Any]) -> None:
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None or running is loop or not loop.is_running():
        finish()  # where the filesystem's own code finds its loop (or, at exit, closes the sockets)
    else:
        loop.call_soon_threadsafe(finish)


def protocol_of(fs: Any) -> str:
    protocol = fs.protocol
    return str(protocol[0] if isinstance(protocol, (tuple, list)) else protocol)


def identity_of(fs: Any, root: str) -> str:
    """A credential-free URL naming the filesystem's server and the root: the store identity."""
    options = getattr(fs, "storage_options", {}) or {}
    host = options.get("host") or ""
    if "base_url" in options:
        host = str(options["base_url"]).split("://", 1)[-1].rstrip("/")
    if endpoint := options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url"):
        host = str(endpoint).split("://", 1)[-1].rstrip("/")
    port = options.get("port")
    user = options.get("username") or options.get("user")
    where = f"{user + '@' if user else ''}{host}{':' + str(port) if port else ''}"
    return redact(f"{protocol_of(fs)}://{where}/{root.lstrip('/')}").rstrip("/")


def url_identity(location: Location) -> str:
    """The identity of a URL-opened store: scheme, user, host, port and path; no password, no options."""

    parts = urllib.parse.urlsplit(location.address)
    netloc = (f"{parts.username + '@' if parts.username else ''}{parts.hostname or ''}"
              f"{':' + str(parts.port) if parts.port else ''}")
    return redact(f"{parts.scheme}://{netloc}{parts.path}").rstrip("/")


def typed_options(options: Mapping[str, str]) -> Iterator[tuple[str, Any]]:
    """URL query values for an unknown filesystem's constructor: whole numbers and true/false typed."""
    for name, value in options.items():
        if value.lower() in ("true", "false"):
            yield name, value.lower() == "true"
        elif value.isdigit():
            yield name, int(value)
        else:
            yield name, value


def webdav_options(location: Location, storage: dict[str, Any]) -> tuple[str, dict[str, Any]]:

    parts = urllib.parse.urlsplit(location.address)
    base = f"{WEBDAV[location.scheme]}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"
    user = storage.pop("username", None) or storage.pop("user", None) or (
        urllib.parse.unquote(parts.username) if parts.username else None)
    password = storage.pop("password", None) or (urllib.parse.unquote(parts.password) if parts.password else None)
    if user is not None and "auth" not in storage:
        storage["auth"] = (user, password or "")
    storage.setdefault("base_url", base)
    return f"webdav://{urllib.parse.unquote(parts.path)}", storage


INTEGRITY = {"s3": frozenset({"md5"}), "s3a": frozenset({"md5"}), "gs": frozenset({"md5", "crc32c"}),
              "gcs": frozenset({"md5", "crc32c"})}
"""Checksums `info` reports: s3fs a single-part ETag (the MD5), gcsfs md5Hash and crc32c."""


def info_etag(info: Mapping[str, Any]) -> str | None:
    value = info.get("ETag") or info.get("etag")
    return str(value) if value else None


def info_checksums(info: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    etag = (info_etag(info) or "").strip('"')
    if len(etag) == 32 and "-" not in etag and "ETag" in info:  # s3fs: a single-part ETag is the MD5
        out["md5"] = etag.lower()
    for name, field in (("md5", "md5Hash"), ("crc32c", "crc32c")):  # gcsfs: base64
        if info.get(field):
            out[name] = base64.b64decode(info[field]).hex()
    return out


def info_mtime(info: Mapping[str, Any]) -> float | None:
    """Seconds since the epoch, from whichever field an implementation reports it in."""
    for field in ("mtime", "LastModified", "modified", "last_modified", "updated", "modify", "created"):
        value = info.get(field)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and value[:14].isdigit() and len(value) >= 14:  # FTP MLSD: YYYYMMDDHHMMSS, UTC
            return datetime.strptime(value[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None
