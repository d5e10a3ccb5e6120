"""URL -> backend. Every cloud quirk lives in this package, each in its backend's module.

Backends implement the small async `Backend` protocol (head, get, put, list, delete, aclose) and
declare their `Capabilities`; `fscas` derives everything else. Adding a backend = one module here
that passes the conformance suite, plus one row in the scheme table.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from fscas.backends.base import Backend, Body, Capabilities, ObjectInfo, check_key, check_metadata
from fscas.backends.url import Location, parse_url
from fscas.errors import ConfigError

__all__ = ["Backend", "Body", "Capabilities", "Location", "ObjectInfo", "check_key", "check_metadata",
           "open_backend", "parse_url"]

# Lazy: `import fscas` must not import s3fs, gcsfs or adlfs.
_BACKENDS = {
    "file": ("fscas.backends.local:FileBackend", ""),
    "memory": ("fscas.backends.memory:MemoryBackend", ""),
    "s3": ("fscas.backends.s3:S3Backend", "s3"),
    "gs": ("fscas.backends.gcs:GCSBackend", "gcs"),
    "az": ("fscas.backends.azure:AzureBackend", "azure"),
}
_SDK = {"s3": "s3fs", "gcs": "gcsfs", "azure": "adlfs"}


def open_backend(url: str, **options: Any) -> Backend:
    """Open the backend a URL names: `s3://`, `gs://`/`gcs://`, `az://`/`abfs://`, `file://` or a
    plain path, `memory://`.

    Options come from keywords, then the URL's query (`?endpoint_url=...&region=...`) or
    Bacalhau-style suffix (`,opt=region=...`), then each SDK's environment and default chain.

    Raises:
        ConfigError: unknown scheme or option, or the backend's SDK is not installed.
    """
    location = parse_url(url)
    factory = _factory(location.scheme)
    backend: Backend = factory(location, options)
    return backend


def _factory(scheme: str) -> Callable[..., Backend]:
    target, extra = _BACKENDS[scheme]
    module_name, _, cls_name = target.partition(":")
    if extra and importlib.util.find_spec(_SDK[extra]) is None:  # find, not import: s3fs costs 0.3 s
        raise ConfigError(f"{scheme}:// needs {_SDK[extra]}: pip install 'fscas[{extra}]'")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls.from_location  # type: ignore[no-any-return]
