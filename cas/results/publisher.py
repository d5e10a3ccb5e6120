"""Publish job results the way Bacalhau's S3 publisher does, to any backend; fetch them back safely.

docs/reference/bacalhau-s3-publisher.md and docs/reference/peers.md §2.1 define the behaviour. Where fscas
differs, it is on purpose: an unknown `{placeholder}` is an error (Bacalhau leaves it verbatim);
`{date}` and `{time}` come from one UTC clock read (Bacalhau reads the local clock twice);
`ChecksumSHA256` is the SHA-256 of the whole archive, computed while streaming (Bacalhau reports
S3's composite checksum, which cannot be recomputed from the bytes above 5 MiB); links in the
result folder are never followed (Bacalhau uploads their targets).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from fscas.backends import Backend, open_backend
from fscas.errors import ConfigError
from fscas.results.archive import regular_files, tar_gz_stream

__all__ = ["PublishedResult", "parse_publish_url", "publish", "publish_async", "render_key"]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_CHUNK = 8 * 2**20
# Bacalhau's `opt=` names -> fscas backend options; `compress` belongs to the publisher.
_OPTION_NAMES = {"endpoint": "endpoint_url", "region": "region"}


@attrs.frozen(kw_only=True)
class PublishedResult:
    """Where a result went: Bacalhau's published-result spec, for any backend."""

    type: str
    """`s3`, or the store's scheme (`gs`, `az`, `file`, `memory`)."""
    bucket: str
    key: str
    region: str = ""
    endpoint: str = ""
    version_id: str = ""
    """The object's version (S3 VersionId on a versioned bucket, GCS generation); archives only."""
    checksum_sha256: str = ""
    """Base64 SHA-256 of the archive, as S3 reports checksums; archives only."""

    def as_spec(self) -> dict[str, Any]:
        """`{"Type": ..., "Params": {"Bucket", "Key", "Region", "Endpoint", "VersionID", "ChecksumSHA256"}}`."""
        return {"Type": self.type, "Params": {"Bucket": self.bucket, "Key": self.key, "Region": self.region,
                                              "Endpoint": self.endpoint, "VersionID": self.version_id,
                                              "ChecksumSHA256": self.checksum_sha256}}

    def to_json(self) -> str:
        """The spec as one line of JSON."""
        return json.dumps(self.as_spec(), ensure_ascii=False)

    def to_yaml(self) -> str:
        """The spec in Bacalhau's YAML shape (`PublishedResult: Type: ... Params: ...`)."""
        spec = self.as_spec()
        lines = ["PublishedResult:", f"  Type: {json.dumps(spec['Type'])}", "  Params:"]
        lines += [f"    {name}: {json.dumps(value, ensure_ascii=False)}" for name, value in spec["Params"].items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> PublishedResult:
        """Read a spec written by `as_spec` (or Bacalhau's, which has the same field names).

        Raises:
            ConfigError: a required field is missing.
        """
        params = spec.get("Params", spec)
        try:
            return cls(type=str(spec.get("Type", "s3")), bucket=str(params["Bucket"]), key=str(params["Key"]),
                       region=str(params.get("Region") or ""), endpoint=str(params.get("Endpoint") or ""),
                       version_id=str(params.get("VersionID") or ""),
                       checksum_sha256=str(params.get("ChecksumSHA256") or ""))
        except KeyError as e:
            raise ConfigError(f"published result spec has no {e.args[0]!r}") from None


def render_key(template: str, *, compress: bool, job_id: str = "", execution_id: str = "", node_id: str = "",
               now: datetime | None = None) -> str:
    """Bacalhau's `ParsePublishedKey`: suffix first (`.tar.gz` or `/`), then the placeholders.

    Raises:
        ConfigError: an unknown `{placeholder}`, or one whose value was not given.
    """
    if compress and not template.endswith(".tar.gz"):
        template += ".tar.gz"
    elif not compress and not template.endswith("/"):
        template += "/"
    when = (now or datetime.now(UTC)).astimezone(UTC)
    values = {"nodeID": node_id, "executionID": execution_id, "jobID": job_id,
              "date": when.strftime("%Y%m%d"), "time": when.strftime("%H%M%S")}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise ConfigError(f"key {template!r}: unknown placeholder {{{name}}}; use {sorted(values)}")
        if not values[name]:
            raise ConfigError(f"key {template!r}: {{{name}}} needs a value (--{_flag(name)})")
        return values[name]

    return _PLACEHOLDER.sub(sub, template)


def _flag(name: str) -> str:
    return re.sub(r"([a-z])([A-Z])", r"\1-\2", name).lower().replace("i-d", "id")


def parse_publish_url(url: str) -> tuple[str, str, str, dict[str, str], bool]:
    """Split `s3://bucket/key,opt=endpoint=...,opt=compress=true` (or `?endpoint_url=...`).

    Returns:
        (scheme URL of the bucket, bucket, key template kept verbatim, backend options, compress).

    Raises:
        ConfigError: no bucket, or a malformed option.
    """
    url, _, opts = url.partition(",opt=")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"{url}: a publish URL looks like s3://bucket/key")
    rest, _, query = rest.partition("?")
    if scheme == "file":  # file:///srv/results/{jobID}.tar.gz: the "bucket" is the filesystem root
        scheme, rest = "file", "/" + rest.lstrip("/")
    bucket, _, key = rest.partition("/")
    bucket = bucket or ("/" if scheme == "file" else "")
    if not bucket:
        raise ConfigError(f"{url}: no bucket")
    options: dict[str, str] = {}
    pairs = [p.split("=", 1) for p in query.split("&") if p] + [
        p.removeprefix("opt=").split("=", 1) for p in ("opt=" + opts).split(",opt=") if opts]
    for pair in pairs:
        if len(pair) != 2 or not pair[0]:
            raise ConfigError(f"{url}: option {'='.join(pair)!r} is not key=value")
        options[_OPTION_NAMES.get(pair[0], pair[0])] = pair[1]
    compress = options.pop("compress", "false").lower() in ("1", "true", "yes")
    return f"{scheme}://{'/' if scheme == 'file' else bucket}", bucket, key, options, compress


async def publish_async(source: str | os.PathLike[str], url: str, *, compress: bool | None = None,
                        job_id: str = "", execution_id: str = "", node_id: str = "", now: datetime | None = None,
                        on_skip: Callable[[str, str], None] | None = None, gzip_level: int = 9,
                        **options: Any) -> PublishedResult:
    """Publish a file or folder to `url`; see `fscas.publish`."""
    base, bucket, template, url_options, url_compress = parse_publish_url(url)
    compress = url_compress if compress is None else compress
    if not 1 <= gzip_level <= 9:
        raise ConfigError(f"gzip level {gzip_level}: give 1 (fastest) to 9 (smallest)")
    key = render_key(template, compress=compress, job_id=job_id, execution_id=execution_id, node_id=node_id, now=now)
    src = Path(source)
    if not src.exists():
        raise ConfigError(f"{src}: nothing to publish (no such file or folder)")
    files = regular_files(src, on_skip)
    backend = open_backend(base, **{**url_options, **options})
    try:
        if compress:
            digest = hashlib.sha256()
            info = await backend.put(key, tar_gz_stream(files, digest, level=gzip_level))
            checksum, version = base64.b64encode(digest.digest()).decode(), info.version_id or ""
        else:
            await _put_plain(backend, files, key)
            checksum, version = "", ""
    finally:
        await backend.aclose()
    opts: Any = getattr(backend, "options", None)
    return PublishedResult(type="s3" if base.startswith("s3:") else base.split(":", 1)[0], bucket=bucket, key=key,
                           region=(getattr(opts, "region", None) or ("us-east-1" if base.startswith("s3:") else "")),
                           endpoint=getattr(backend, "endpoint", None) or "", version_id=version,
                           checksum_sha256=checksum)


async def _put_plain(backend: Backend, files: list[tuple[str, Path]], key: str) -> None:
    slots = asyncio.Semaphore(16)

    async def one(rel: str, path: Path) -> None:
        async with slots:
            await backend.put(key + rel, await asyncio.to_thread(path.read_bytes) if path.stat().st_size <= _CHUNK
                              else _file_chunks(path))

    await asyncio.gather(*(one(rel, path) for rel, path in files))


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb", buffering=0) as f:
        while chunk := await asyncio.to_thread(f.read, _CHUNK):
            yield chunk


def publish(source: str | os.PathLike[str], url: str, *, compress: bool | None = None, job_id: str = "",
            execution_id: str = "", node_id: str = "", now: datetime | None = None,
            on_skip: Callable[[str, str], None] | None = None, gzip_level: int = 9,
            **options: Any) -> PublishedResult:
    """Publish a file or folder to `url` with Bacalhau's S3 publisher semantics, on any backend.

    `url` is `s3://bucket/key-template` (or `gs://`, `az://`, ...), with options in the query string
    or Bacalhau's `,opt=endpoint=...,opt=region=...,opt=compress=true` suffix. The key template may
    use `{jobID}`, `{executionID}`, `{nodeID}`, `{date}` (YYYYMMDD, UTC) and `{time}` (HHMMSS, UTC).
    With `compress`, one tar.gz object (`.tar.gz` appended when missing) is streamed up while its
    SHA-256 is computed; otherwise every regular file is its own object under the key (`/`
    appended when missing). Links are never followed nor published: each one is reported to
    `on_skip(relative_path, why)` (where `fscas.manifests.snapshot` would include a link to a file
    inside the root, a published result holds regular files only).

    `gzip_level` (1 fastest .. 9 smallest, the default) applies with `compress`.

    Raises:
        ConfigError: an unknown or unfilled placeholder, a bad URL or option, a missing source, a
            gzip level outside 1..9.
    """
    from fscas.runner import run_sync

    return run_sync(publish_async(source, url, compress=compress, job_id=job_id, execution_id=execution_id,
                                  node_id=node_id, now=now, on_skip=on_skip, gzip_level=gzip_level, **options))
