"""Fetch a published result (an archive or a prefix of objects) into a folder, verified and contained.

The archive is downloaded to a temp file while its SHA-256 is computed, checked against the spec's
`ChecksumSHA256` (when it has one), then extracted into a temp folder beside `dest` that is renamed
into place. Nothing is ever written outside `dest`: absolute names, `..`, links that point out,
and device files are refused (tarfile's `data` filter, plus our own check of every member name).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from fscas.backends import open_backend
from fscas.errors import ConfigError, IntegrityError, UnsafePathError
from fscas.files import atomic_write_bytes
from fscas.paths import safe_join
from fscas.publisher import PublishedResult, parse_publish_url

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


async def fetch_async(result_or_url: PublishedResult | str, dest: str | os.PathLike[str], **options: Any) -> Path:
    """Download a published result into `dest` (which must not exist or be empty); see `fscas.fetch`."""
    base, key, expected, opts = _target(result_or_url, dict(options))
    dest_path = Path(dest)
    if dest_path.exists() and (not dest_path.is_dir() or any(dest_path.iterdir())):
        raise ConfigError(f"{dest_path}: exists and is not an empty folder")
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest_path.name}.fscas-", dir=dest_path.parent))
    backend = open_backend(base, **opts)
    try:
        if key.endswith(".tar.gz"):
            await _fetch_archive(backend, key, expected, staging)
        else:
            await _fetch_prefix(backend, key, staging)
        staging.chmod(0o755)  # mkdtemp made it 0700; the result is an ordinary folder
        if dest_path.exists():
            dest_path.rmdir()
        os.replace(staging, dest_path)
    finally:
        await backend.aclose()
        shutil.rmtree(staging, ignore_errors=True)
    return dest_path


async def _fetch_archive(backend: Any, key: str, expected: str, staging: Path) -> None:
    size = (await backend.head(key)).size
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
        _extract(f, staging, key)


def _extract(f: Any, staging: Path, key: str) -> None:
    try:
        with tarfile.open(fileobj=f, mode="r:gz") as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("./")
                if name in ("", "."):
                    continue
                safe_join(staging, name)  # absolute, '..', backslash, NUL
                if member.isdev() or member.isfifo():
                    raise UnsafePathError(f"{key}: {member.name!r} is a device or fifo")
            tar.extractall(staging, filter="data")  # refuses links that point out, and their targets
    except tarfile.FilterError as e:
        raise UnsafePathError(f"{key}: archive member refused: {e}") from e
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, UnsafePathError):
            raise
        raise IntegrityError(f"{key}: not a readable tar.gz archive: {e}") from e


async def _fetch_prefix(backend: Any, prefix: str, staging: Path) -> None:
    listed = [o async for o in backend.list(prefix)]
    for o in listed:
        rel = o.key[len(prefix):]
        target = safe_join(staging, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = await backend.get(o.key)
        if len(data) != o.size:
            raise IntegrityError(f"{backend.url}: {o.key}: {len(data)} bytes, listed as {o.size}")
        atomic_write_bytes(target, data, durable=False)


def fetch(result_or_url: PublishedResult | str, dest: str | os.PathLike[str], **options: Any) -> Path:
    """Download a published result (its spec, or a publish URL) into `dest`, verified and contained.

    An archive's SHA-256 is checked against the spec's `ChecksumSHA256`; extraction refuses absolute
    names, `..`, links pointing out and device files, and happens in a temp folder renamed to `dest`.

    Raises:
        IntegrityError: the checksum does not match, or the archive is unreadable.
        UnsafePathError: an archive member or object key would land outside `dest`.
        ConfigError: `dest` exists and is not an empty folder.
    """
    from fscas.runner import run_sync

    return run_sync(fetch_async(result_or_url, dest, **options))
