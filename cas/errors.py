"""The fscas exception tree. A leaf module: every fscas package may import it.

```
FscasError
├── ManifestError(ValueError)      a manifest field is malformed; names the field and the path
├── UnsafePathError(ValueError)    a path would land outside its root
├── ConfigError(ValueError)        bad URL, option or glob
├── IntegrityError                 bytes do not match their size or hash
├── SnapshotError(OSError)         a file under a snapshot root cannot be read
└── StoreError(OSError)
    ├── ObjectNotFound(FileNotFoundError)
    │   └── BucketNotFound
    ├── ObjectExists(FileExistsError)       a create-only write lost
    ├── AccessDenied(PermissionError)
    ├── Unreachable(ConnectionError)
    └── NotSupported(NotImplementedError)
```

Each class also inherits the builtin a caller would already catch, so `except ValueError`
or `except FileNotFoundError` keep working around fscas calls.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "BucketNotFound",
    "ConfigError",
    "FscasError",
    "IntegrityError",
    "ManifestError",
    "NotSupported",
    "ObjectExists",
    "ObjectNotFound",
    "SnapshotError",
    "StoreError",
    "Unreachable",
    "UnsafePathError",
]


class FscasError(Exception):
    """Base class of every error fscas raises on purpose."""


class ManifestError(FscasError, ValueError):
    """A manifest is malformed: the message names the field and, where known, the path."""


class UnsafePathError(FscasError, ValueError):
    """A path would land outside its root (absolute, `..`, a link out, NUL, backslash)."""


class ConfigError(FscasError, ValueError):
    """A URL, option or glob pattern is invalid."""


class IntegrityError(FscasError):
    """Bytes do not match the size or hash they were stored or listed under."""


class SnapshotError(FscasError, OSError):
    """A file or folder under a snapshot root could not be read."""


class StoreError(FscasError, OSError):
    """A store or backend operation failed."""


class ObjectNotFound(StoreError, FileNotFoundError):
    """The server said the object does not exist."""


class BucketNotFound(ObjectNotFound):
    """The server said the bucket (or container) does not exist."""


class ObjectExists(StoreError, FileExistsError):
    """A create-only write lost: the object already exists."""


class AccessDenied(StoreError, PermissionError):
    """Credentials are missing, wrong, or lack the permission."""


class Unreachable(StoreError, ConnectionError):
    """The endpoint could not be reached or did not answer in time."""


class NotSupported(StoreError, NotImplementedError):
    """The backend or server does not support the operation."""
