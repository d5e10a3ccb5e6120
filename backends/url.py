"""One URL in, typed options out: parsing store URLs and their options, unknown options are errors."""

from __future__ import annotations

import difflib
import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, TypeVar, cast

import attrs

from fscas.errors import ConfigError, redact

__all__ = ["FSSPEC_ALIASES", "STORE_OPTION_NAMES", "Location", "build_options", "known_protocol", "parse_url"]

_SCHEMES = {"file": "file", "memory": "memory", "s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs",
            "az": "az", "abfs": "az", "abfss": "az"}

T = TypeVar("T")


def _str_dict(m: Mapping[str, str]) -> dict[str, str]:
    return dict(m)


@attrs.frozen(kw_only=True)
class Location:
    """A parsed store URL: where the root is, and the options the URL itself carries."""

    scheme: str
    """Canonical scheme: `file`, `memory`, `s3`, `gs` or `az`."""
    bucket: str
    """Bucket or container; for `file` the absolute root folder; for `memory` a name."""
    prefix: str
    """Key prefix under the bucket, without leading or trailing `/` ('' for none)."""
    options: Mapping[str, str] = attrs.field(factory=dict, converter=_str_dict)
    source: str = ""
    """The URL as given, credentials masked: what messages show."""
    address: str = ""
    """The URL as given without its query and `,opt=` options (what an fsspec filesystem is opened with)."""


def parse_url(url: str) -> Location:
    """Split a store URL into scheme, bucket, prefix and options.

    Accepts `s3://bucket/prefix?endpoint_url=...`, `gs://`, `gcs://`, `az://container/prefix`,
    `abfs://container@account.dfs.core.windows.net/prefix`, `file:///abs/path`, a plain path and
    `memory://name/prefix`. Options may also follow Bacalhau's form, `s3://b/k,opt=region=x`.
    A plain path that looks like a URL gone wrong (`s3:/b`, `s3//b`, `s3:b`, `dir?opt=1`) is
    refused rather than taken as a folder.

    Raises:
        ConfigError: unknown scheme, missing bucket, a malformed option, or a mistyped URL; the
            message shows the URL with its credentials masked.
    """
    shown = redact(url)
    url, _, bacalhau = url.partition(",opt=")
    options: dict[str, str] = {}
    for item in ("opt=" + bacalhau).split(",opt=") if bacalhau else ():
        name, sep, value = item.removeprefix("opt=").partition("=")
        if not sep or not name:
            raise ConfigError(f"{redact(url)}: option {redact(item)!r} is not opt=key=value")
        options[name] = value
    if "://" not in url:
        _refuse_mistyped(url)
        folder = os.path.abspath(url)
        return Location(scheme="file", bucket=folder, prefix="", options=options, source=shown,
                        address=f"file://{folder}")
    parts = urllib.parse.urlsplit(url)
    address = urllib.parse.urlunsplit(parts._replace(query="", fragment=""))
    for name, values in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items():
        options.setdefault(name, values[-1])
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:  # another protocol: a registered backend's, or fsspec's (the generic backend)
        return Location(scheme=parts.scheme.lower(), bucket=parts.hostname or "", prefix=parts.path.strip("/"),
                        options=options, source=shown, address=address)
    if scheme == "file":
        root = urllib.parse.unquote(parts.netloc + parts.path)
        if not root:
            raise ConfigError(f"{redact(url)}: a file URL needs a path, as in file:///srv/store")
        return Location(scheme=scheme, bucket=os.path.abspath(root), prefix="", options=options, source=shown,
                        address=f"file://{os.path.abspath(root)}")
    if parts.password is not None or (parts.username and scheme != "az"):
        raise ConfigError(f"{redact(url)}: {parts.scheme}:// takes no credentials in the URL (they would end up "
                          f"in shell history and logs); pass them as options or through the SDK's environment")
    bucket = urllib.parse.unquote(parts.netloc)
    if scheme == "az" and "@" in bucket:  # abfs://container@account.dfs.core.windows.net/...
        bucket, _, host = bucket.partition("@")
        options.setdefault("account_name", host.split(".", 1)[0])
    if not bucket and scheme != "memory":
        raise ConfigError(f"{redact(url)}: no bucket; write {parts.scheme}://BUCKET[/PREFIX]")
    prefix = urllib.parse.unquote(parts.path).strip("/")
    return Location(scheme=scheme, bucket=bucket, prefix=prefix, options=options, source=shown, address=address)


_ONE_SLASH = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):/(?!/)(.*)", re.S)      # s3:/bucket
_NO_COLON = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)//(.*)", re.S)            # s3//bucket
_NO_SLASHES = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):(?!/)(.+)", re.S)      # s3:bucket
_QUERY = re.compile(r"\?[A-Za-z_]\w*=")                                     # folder?create=1


def _refuse_mistyped(path: str) -> None:
    """Refuse a folder path that is really a URL gone wrong, naming the URL it probably meant."""
    if m := _ONE_SLASH.match(path):
        raise ConfigError(f"{redact(path)}: not a folder or a URL; did you mean {redact(f'{m[1]}://{m[2]}')}?")
    for pattern in (_NO_COLON, _NO_SLASHES):
        if (m := pattern.match(path)) and known_protocol(m[1]):
            raise ConfigError(f"{redact(path)}: not a folder or a URL; did you mean {redact(f'{m[1]}://{m[2]}')}?")
    if _QUERY.search(path):
        folder, _, query = path.partition("?")
        raise ConfigError(f"{redact(path)}: a folder path takes no ?options; did you mean "
                          f"{redact(f'file://{os.path.abspath(folder)}?{query}')}?")


def known_protocol(name: str) -> bool:
    """True for a scheme fscas or fsspec knows (`s3`, `gs`, `sftp`, `hf`, `webdav+https`...)."""
    if name.lower() in _SCHEMES or name.lower() in FSSPEC_ALIASES:
        return True
    from fsspec.registry import known_implementations, registry

    return name.lower() in known_implementations or name.lower() in registry


FSSPEC_ALIASES = {"webdav+https": "webdav", "webdav+http": "webdav", "dav": "webdav", "davs": "webdav"}
"""URL schemes the generic backend maps to an fsspec protocol of another name."""


STORE_OPTION_NAMES = ("concurrency", "existence_cache", "backend", "root")
"""Keywords `open_store` takes for the store itself, beside the backend's options: a misspelt one
is reported against these too."""


def build_options(cls: type[T], location: Location, given: Mapping[str, Any]) -> T:
    """Make the options object `cls` from keyword arguments over the URL's options (keywords win).

    URL values are strings; they are converted to the field's type (`bool` from true/false/1/0,
    `int`, `float`). Environment defaults are each options class's own business.

    Raises:
        ConfigError: an unknown option (with the closest valid name) or a value of the wrong kind.
    """
    fields = {f.name: f for f in attrs.fields(cast(Any, cls))}
    values: dict[str, Any] = {}
    shown = location.source or f"{location.scheme}://{location.bucket}"
    for source, items in (("URL", location.options), ("keyword", given)):
        for name, value in items.items():
            if name not in fields:
                valid = sorted([*fields, *STORE_OPTION_NAMES])
                close = difflib.get_close_matches(name, valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(valid)}"
                raise ConfigError(f"{shown}: unknown {source} option {name!r}{hint}")
            if isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value):
                # A CR/LF would end up in a header (region, token): say which option, never its value.
                raise ConfigError(f"{shown}: option {name!r} holds a control character (CR, LF, NUL...)")
            values[name] = _convert(shown, name, value, fields[name].type) if source == "URL" else value
    return cls(**values)


def _convert(url: str, name: str, value: str, kind: object) -> object:
    kind = str(kind)
    if kind.startswith("bool"):
        if value.lower() in ("1", "true", "yes", "on", ""):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{url}: option {name!r} must be true or false, got {value!r}")
    if kind.startswith("int"):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{url}: option {name!r} must be an integer, got {value!r}") from None
    if kind.startswith("float"):
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not 0 < number < float("inf"):
            raise ConfigError(f"{url}: option {name!r} must be a positive number, got {value!r}")
        return number
    return value
