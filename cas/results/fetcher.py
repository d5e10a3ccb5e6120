"""Fetch a published result (an archive or a prefix of objects) into a folder, verified and contained.

The archive is downloaded to a temp file while its SHA-256 is computed, checked against the spec's
`ChecksumSHA256` (when it has one), then extracted into a temp folder beside `dest` that is renamed
into place. Nothing is ever written outside `dest`: only folders and regular files are extracted
(`fscas.results.archive.extract`), names that would leave `dest`, links and device files are refused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from fscas.backends import open_backend
from fscas.errors import ConfigError, FscasError, IntegrityError, ObjectNotFound
from fscas.files import atomic_write_bytes
from fscas.paths import check_folder_target, safe_join
from fscas.results.archive import extract
from fscas.results.publisher import PublishedResult, parse_publish_url

__all__ = ["fetch", "fetch_async"]

_PART = 16 * 2**20


def _target(result_or_url: PublishedResult | str, options: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
    """(bucket URL, key, expected base64 SHA-256 or '', backend options)."""
    if isinstance(result_or_url, PublishedResult):
        r = result_or_url
        scheme = "s3" if r.type == "s3" else r.type
        opts = {"endpoint_url": r.endpoint} if r.endpoint and scheme in ("s3", "gs") else {}
        if r.region and scheme == "s3":
            opts["region"] = r.region
        return f"{scheme}://{r.bucket}", r.key, r.checksum_sha256, {**opts, **options}
    base, _, key, url_options, _ = parse_publish_url(result_or_url)
    return base, key, "", {**url_options, **options}


async def fetch_async(result_or_url: PublishedResult | str, dest: str | os.PathLike[str], *,
                      max_bytes: int | None = None, **options: Any) -> Path:
    """Download a published result into `dest` (which must not exist or be empty); see `fscas.fetch`."""
    base, key, expected, opts = _target(result_or_url, dict(options))
    dest_path = Path(dest)
    if dest_path.is_symlink():
        raise ConfigError(f"{dest_path}: is a link; give the folder itself (the result replaces the folder at "
                          "this path)")
    if dest_path.exists() and (not dest_path.is_dir() or any(dest_path.iterdir())):
        raise ConfigError(f"{dest_path}: exists and is not an empty folder")
    check_folder_target(dest_path)
    limit = max_bytes if max_bytes is not None else _room(dest_path)
    backend = open_backend(base, **opts)
    try:
        where = f"{backend.url}: {key}"
        if key.endswith(".tar.gz"):
            try:
                size = (await backend.head(key)).size
            except ObjectNotFound:
                raise ObjectNotFound(f"{where}: nothing published there") from None
            fetched: Callable[[Path], Awaitable[None]] = partial(_fetch_archive, backend, key, size, expected, limit)
        else:
            listed = [o async for o in backend.list(key)]
            if not listed:
                raise ObjectNotFound(f"{where}: nothing published there")
            if (total := sum(o.size for o in listed)) > limit:
                raise FscasError(f"{where}: {total} bytes published, past the limit of {limit} bytes; nothing "
                                 "was fetched")
            fetched = partial(_fetch_objects, backend, key, listed)
        made = [p for p in dest_path.parents if not p.exists()]  # only now: an error above creates nothing
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest_path.name}.fscas-", dir=dest_path.parent))
        try:
            await fetched(staging)
            staging.chmod(0o755)  # mkdtemp made it 0700; the result is an ordinary folder
            if dest_path.exists():
                dest_path.rmdir()
            os.replace(staging, dest_path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for folder in made:  # innermost first; a folder someone else filled meanwhile stays
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
    finally:
        await backend.aclose()
    return dest_path


_MARGIN = 2**30  # room left on the destination's filesystem when no limit is given (at most 5 % of it)


def _room(dest: Path) -> int:
    """The default limit: free space of the filesystem `dest` will be on, minus a margin."""
    existing = next(p for p in (dest, *dest.parents) if p.exists())
    usage = shutil.disk_usage(existing)
    return max(0, usage.free - min(_MARGIN, usage.total // 20))


async def _fetch_archive(backend: Any, key: str, size: int, expected: str, limit: int, staging: Path) -> None:
    digest = hashlib.sha256()
    with tempfile.TemporaryFile(dir=staging.parent) as f:
        for start in range(0, max(size, 1), _PART):
            chunk = await backend.get(key, start=start, end=min(size, start + _PART))
            digest.update(chunk)
            f.write(chunk)
        got = base64.b64encode(digest.digest()).decode()
        if expected and got != expected:
            raise IntegrityError(f"{backend.url}: {key}: SHA-256 {got}, the published result says {expected}")
        f.seek(0)
        await asyncio.to_thread(extract, f, staging, key, limit)


async def _fetch_objects(backend: Any, prefix: str, listed: list[Any], staging: Path) -> None:
    for o in listed:
        rel = o.key[len(prefix):]
        target = safe_join(staging, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = await backend.get(o.key)
        if len(data) != o.size:
            raise IntegrityError(f"{backend.url}: {o.key}: {len(data)} bytes, listed as {o.size}")
        atomic_write_bytes(target, data, durable=False)


def fetch(result_or_url: PublishedResult | str, dest: str | os.PathLike[str], *, max_bytes: int | None = None,
          **options: Any) -> Path:
    """Download a published result (its spec, or a publish URL) into `dest`, verified and contained.

    An archive's SHA-256 is checked against the spec's `ChecksumSHA256`; extraction writes only
    folders and regular files, refuses names that would leave `dest`, links and device files, and
    happens in a temp folder renamed to `dest`. At most `max_bytes` are written, counting headers,
    names and folders (default: the free space of `dest`'s filesystem minus a margin of 5 %, at most
    1 GiB): a larger result, or a decompression bomb, stops with nothing left behind.

    Raises:
        ObjectNotFound: nothing is published at the URL (nothing is created).
        IntegrityError: the checksum does not match, or the archive is unreadable.
        UnsafePathError: an archive member or object key would land outside `dest`.
        ConfigError: `dest` exists and is not an empty folder, is a link, or is below a file.
        FscasError: the result is larger than `max_bytes`.
    """
    from fscas.runner import run_sync

    return run_sync(fetch_async(result_or_url, dest, max_bytes=max_bytes, **options))
