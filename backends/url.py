"""One URL in, typed options out: parsing store URLs and their options, unknown options are errors."""

from __future__ import annotations

import difflib
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any, TypeVar, cast

import attrs

from fscas.errors import ConfigError

__all__ = ["Location", "build_options", "parse_url"]

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


def parse_url(url: str) -> Location:
    """Split a store URL into scheme, bucket, prefix and options.

    Accepts `s3://bucket/prefix?endpoint_url=...`, `gs://`, `gcs://`, `az://container/prefix`,
    `abfs://container@account.dfs.core.windows.net/prefix`, `file:///abs/path`, a plain path and
    `memory://name/prefix`. Options may also follow Bacalhau's form, `s3://b/k,opt=region=x`.

    Raises:
        ConfigError: unknown scheme, missing bucket, or a malformed option.
    """
    url, _, bacalhau = url.partition(",opt=")
    options: dict[str, str] = {}
    for item in ("opt=" + bacalhau).split(",opt=") if bacalhau else ():
        name, sep, value = item.removeprefix("opt=").partition("=")
        if not sep or not name:
            raise ConfigError(f"{url}: option {item!r} is not opt=key=value")
        options[name] = value
    if "://" not in url:
        return Location(scheme="file", bucket=os.path.abspath(url), prefix="", options=options)
    parts = urllib.parse.urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ConfigError(f"{url}: unknown scheme {parts.scheme!r}; use one of {sorted(_SCHEMES)}")
    for name, values in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items():
        options.setdefault(name, values[-1])
    if scheme == "file":
        root = urllib.parse.unquote(parts.netloc + parts.path)
        if not root:
            raise ConfigError(f"{url}: a file URL needs a path, as in file:///srv/store")
        return Location(scheme=scheme, bucket=os.path.abspath(root), prefix="", options=options)
    bucket = urllib.parse.unquote(parts.netloc)
    if scheme == "az" and "@" in bucket:  # abfs://container@account.dfs.core.windows.net/...
        bucket, _, host = bucket.partition("@")
        options.setdefault("account_name", host.split(".", 1)[0])
    if not bucket and scheme != "memory":
        raise ConfigError(f"{url}: no bucket; write {parts.scheme}://BUCKET[/PREFIX]")
    prefix = urllib.parse.unquote(parts.path).strip("/")
    return Location(scheme=scheme, bucket=bucket, prefix=prefix, options=options)


def build_options(cls: type[T], url: str, from_url: Mapping[str, str], given: Mapping[str, Any]) -> T:
    """Make the options object `cls` from keyword arguments over URL options (keywords win).

    URL values are strings; they are converted to the field's type (`bool` from true/false/1/0,
    `int`). Environment defaults are each options class's own business.

    Raises:
        ConfigError: an unknown option (with the closest valid name) or a value of the wrong kind.
    """
    fields = {f.name: f for f in attrs.fields(cast(Any, cls))}
    values: dict[str, Any] = {}
    for source, items in (("URL", from_url), ("keyword", given)):
        for name, value in items.items():
            if name not in fields:
                close = difflib.get_close_matches(name, fields, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(sorted(fields))}"
                raise ConfigError(f"{url}: unknown {source} option {name!r}{hint}")
            values[name] = _convert(url, name, value, fields[name].type) if source == "URL" else value
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
    return value
