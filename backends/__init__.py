"""URL -> backend. Every cloud quirk lives in this package, each in its backend's module.

Backends implement the small async `Backend` protocol (head, get, put, list, delete, aclose) and
declare their `Capabilities`; `fscas` derives everything else. Backends plug in through the
entry-point group `fscas.backends` (name: URL scheme; value: a factory taking a `Location` and the
keyword options), which is also how the built-in ones register. Any other protocol fsspec knows,
and any fsspec filesystem instance, goes through the generic `FsspecBackend`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import attrs

from fscas.backends.base import (
    Backend,
    Body,
    Capabilities,
    ObjectInfo,
    Raw,
    RawAccess,
    Swappable,
    check_key,
    check_metadata,
)
from fscas.backends.url import FSSPEC_ALIASES, Location, known_protocol, parse_url
from fscas.errors import ConfigError, logger, redact

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["Backend", "BackendEntry", "Body", "Capabilities", "Location", "ObjectInfo", "Raw", "RawAccess", "Swappable",
           "available_backends", "check_key", "check_metadata", "open_backend", "parse_url"]

log = logger(__name__)

GROUP = "fscas.backends"
_SDK = {"s3": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "az": ("adlfs", "azure")}  # scheme: (module, extra)
# fscas's own entries of the group (pyproject.toml; a test holds the two equal), loaded without
# reading every installed distribution's metadata: that scan and importing importlib.metadata
# cost a command 30 ms warm and 80 ms after the page cache is emptied, a tenth of a small pull.
_BUILTIN = {"file": "fscas.backends.local:FileBackend.from_location",
            "memory": "fscas.backends.memory:MemoryBackend.from_location",
            "s3": "fscas.backends.s3:S3Backend.from_location",
            "gs": "fscas.backends.gcs:GCSBackend.from_location",
            "az": "fscas.backends.azure:AzureBackend.from_location"}

Factory = Callable[[Location, dict[str, Any]], Backend]


@attrs.frozen(kw_only=True)
class BackendEntry:
    """One installed backend: the scheme it serves, its factory and the distribution that ships it."""

    scheme: str
    target: str
    """`module:attribute` of the factory."""
    distribution: str


def available_backends() -> list[BackendEntry]:
    """The backends registered under the `fscas.backends` entry-point group, by scheme."""
    from importlib.metadata import entry_points

    found = [BackendEntry(scheme=ep.name, target=ep.value, distribution=_dist(ep)) for ep in entry_points(group=GROUP)]
    return sorted(found, key=lambda e: e.scheme)


def open_backend(url: str | os.PathLike[str] | Any, *, root: str | None = None,
                 backend: Literal["native", "fsspec"] | None = None, **options: Any) -> Backend:
    """Open the backend a URL, a folder path or an fsspec filesystem names.

    `s3://`, `gs://`/`gcs://`, `az://`/`abfs://`, `file://` or a plain path and `memory://` have
    native backends; any other scheme is served by the backend registered for it (entry points,
    `fscas.backends`), else by the generic `FsspecBackend` if fsspec knows the protocol (`sftp://`,
    `ftp://`, `webdav+https://`, `hdfs://`...). An fsspec filesystem instance is used as given,
    with `root` as the folder or bucket prefix of the store. `backend="fsspec"` sends a native
    scheme through the generic backend too.

    Options come from keywords, then the URL's query (`?endpoint_url=...&region=...`) or
    Bacalhau-style suffix (`,opt=region=...`), then each SDK's environment and default chain. For
    the generic backend they are the filesystem's storage options.

    Raises:
        ConfigError: not a URL, path or filesystem; unknown scheme or option; the backend's SDK is
            not installed.
    """
    if _is_filesystem(url):
        return _from_filesystem(url, root, options)
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str):
        raise ConfigError(f"a store is opened from a URL or a folder path (or an fsspec filesystem with root=), "
                          f"not {type(url).__name__}")
    if root is not None:
        raise ConfigError(f"{redact(url)}: root= goes with a filesystem instance; put the prefix in the URL")
    location = parse_url(url)
    if "backend" in location.options:  # `?backend=fsspec` in the URL, for the command line
        backend = backend or location.options["backend"]  # type: ignore[assignment]
        location = attrs.evolve(location, options={k: v for k, v in location.options.items() if k != "backend"})
    if backend not in (None, "native", "fsspec"):
        raise ConfigError(f"{location.source}: backend must be 'native' or 'fsspec', not {backend!r}")
    factory = _factory(location, generic=backend == "fsspec")
    return factory(location, options)


def _factory(location: Location, *, generic: bool) -> Factory:
    scheme = location.scheme
    if not generic and (own := _builtin(scheme)) is not None:
        return own
    if not generic and (candidates := _registered(scheme)):
        if _dist(candidates[0]) == "fscas" and _sdk_missing(scheme):
            module, extra = _SDK[scheme]
            raise ConfigError(f"{scheme}:// needs {module}: pip install {module} (in a checkout of fscas: "
                              f"pip install -e '.[{extra}]')")
        failures = []
        for entry in candidates:
            try:
                factory: Factory = entry.load()
            except Exception as e:  # a third party's package: whatever its import raises is its own
                failures.append(f"{_dist(entry)} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
                continue
            for failure in failures:  # a fallback served the scheme: say which package did not load
                log.warning("fscas: the %s:// backend of the package %s failed to load; using %s's", scheme,
                            failure, _dist(entry))
            return factory
        raise ConfigError(f"{scheme}:// is served by a backend that fails to load: {'; '.join(failures)}")
    protocol = FSSPEC_ALIASES.get(scheme, scheme)
    if not known_protocol(protocol):
        from importlib.metadata import entry_points

        names = sorted({ep.name for ep in entry_points(group=GROUP)})
        raise ConfigError(f"{location.source}: unknown scheme {scheme!r}: neither a backend of fscas "
                          f"({', '.join(names)}) nor a protocol fsspec knows")
    from fscas.backends.generic import FsspecBackend

    return FsspecBackend.from_location


def _builtin(scheme: str) -> Factory | None:
    """fscas's own factory for `scheme` when it is the one `_registered` would put first and it
    loads; None otherwise, and the entry points decide (and say what failed)."""
    target = _BUILTIN.get(scheme)
    if target is None or os.environ.get(_override(scheme), "fscas") != "fscas":
        return None
    if _sdk_missing(scheme):
        return None
    module, _, path = target.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for name in path.split("."):
            found = getattr(found, name)
    except Exception:  # as the entry point's load would fail: let that path report it
        return None
    return found  # type: ignore[no-any-return]


def _sdk_missing(scheme: str) -> bool:
    """Whether fscas's own backend for `scheme` lacks the SDK it needs (find_spec: importing s3fs
    to find out would cost 0.3 s)."""
    return scheme in _SDK and importlib.util.find_spec(_SDK[scheme][0]) is None


def _override(scheme: str) -> str:
    """The variable naming the distribution whose backend serves `scheme` first."""
    return "FSCAS_BACKEND_" + "".join(c if c.isalnum() else "_" for c in scheme.upper())


def _registered(scheme: str) -> list[EntryPoint]:
    """The entry points serving `scheme`, the one to use first: the distribution named by
    `FSCAS_BACKEND_<SCHEME>` if set, else fscas's own (a plugin cannot shadow a built-in by accident:
    a broken one would break every command on that scheme), else the plugins by name."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=GROUP) if ep.name == scheme]
    wanted = os.environ.get(_override(scheme))
    return sorted(found, key=lambda ep: (_dist(ep) != wanted, _dist(ep) != "fscas", _dist(ep)))


def _dist(entry: EntryPoint) -> str:
    return entry.dist.name if entry.dist is not None else "?"


def _is_filesystem(obj: Any) -> bool:
    if isinstance(obj, (str, bytes, os.PathLike)) or obj is None:
        return False
    from fsspec.spec import AbstractFileSystem

    return isinstance(obj, AbstractFileSystem)


def _from_filesystem(fs: Any, root: str | None, options: dict[str, Any]) -> Backend:
    from fscas.backends.generic import FsspecBackend

    if options:
        raise ConfigError(f"options {sorted(options)} do not apply to a filesystem instance: give them to the "
                          "filesystem when you make it")
    if root is None:
        raise ConfigError(f"a {type(fs).__name__} needs root=: the folder (or bucket/prefix) of the store on it")
    return FsspecBackend(fs, fs._strip_protocol(root) if root else "")
