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
    │   └── CredentialsRefused              unknown key, wrong secret, expired token
    ├── Unreachable(ConnectionError)
    ├── NotSupported(NotImplementedError)
    └── DeadlinePassed                      a request not sent: its caller's deadline had passed
```

Each class also inherits the builtin a caller would already catch, so `except ValueError`
or `except FileNotFoundError` keep working around fscas calls.

Messages name the URL, key, path or field, never a credential: `redact` is the one rule every
message, repr and printed URL goes through.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

__all__ = [
    "AccessDenied",
    "BucketNotFound",
    "ConfigError",
    "CredentialsRefused",
    "DeadlinePassed",
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
    "logger",
    "redact",
    "secrets_in",
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


class CredentialsRefused(AccessDenied):
    """The server refused the credentials themselves: an unknown key, a wrong secret, an expired token."""


class Unreachable(StoreError, ConnectionError):
    """The endpoint could not be reached or did not answer in time."""


class DeadlinePassed(StoreError):
    """A request was not sent: it would have gone out after the deadline its caller set
    (`fscas.backends.base.SEND_BY`), which a gc sets on its deletes."""


class NotSupported(StoreError, NotImplementedError):
    """The backend or server does not support the operation."""


# -- redaction: what every message, repr, URL and log line passes through ----------------------------

_SECRET_FIELDS = ("secret", "key", "token", "password", "passwd", "pass", "account_key", "accountkey", "sas_token",
                  "connection_string", "access_token", "refresh_token", "id_token", "client_secret", "credentials",
                  "sig", "signature", "sharedaccesssignature", "x-amz-signature", "x-amz-credential",
                  "x-amz-security-token", "x-goog-signature", "x-goog-credential", "aws_secret_access_key",
                  "aws_session_token")
"""Names whose values are credentials, in URL queries, `,opt=` options, connection strings and SAS tokens."""
_FIELD = re.compile(r"(?i)(?<![\w-])(" + "|".join(sorted(map(re.escape, _SECRET_FIELDS), key=len, reverse=True))
                    + r")=([^&;,\s'\"<>]+)")
_CONNECTION_STRING = re.compile(r"(?i)(?<![\w-])(connection_string)=([^&\s'\"<>]+)")  # holds ';' and '='
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@\s:]*):([^/?#@\s]+)@")
_HEADER = re.compile(r"(?i)\b(authorization|x-amz-security-token|proxy-authorization)(\s*[:=]\s*)([^\r\n]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
MASK = "***"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every credential replaced by `***`.

    Masks URL passwords (`scheme://user:***@host`), the values of credential fields in queries,
    `,opt=` options, connection strings and SAS tokens (`secret=`, `token=`, `AccountKey=`, `sig=`,
    ...), `Authorization` headers and bearer tokens, and every literal value in `secrets` (the
    values of credential options and environment variables a caller knows).
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: f"{m[1]}{m[2]}:{MASK}@", text)
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m[1]} {MASK}", text)
    text = _CONNECTION_STRING.sub(lambda m: f"{m[1]}={MASK}", text)
    return _FIELD.sub(lambda m: f"{m[1]}={MASK}", text)


def secrets_in(text: str) -> set[str]:
    """The credential values a URL (or connection string, or option list) carries, for `redact`."""
    found = {m[3] for m in _USERINFO.finditer(text)} | {m[2] for m in _FIELD.finditer(text)}
    found |= {m[2] for m in _CONNECTION_STRING.finditer(text)}
    found |= {urllib.parse.unquote(s) for s in found}
    return {s for s in found if s != MASK}


def logger(name: str) -> logging.Logger:
    """fscas's logger `name`, with credentials masked in everything it logs (`redact`). Logger
    filters are not inherited, so each of fscas's loggers is made here. The SDKs' DEBUG logs are
    their own: botocore's "Sending http request" line carries `X-Amz-Security-Token` (README says so).
    `logging` is imported here, not at the top: commands that log nothing skip it."""
    import logging

    made = logging.getLogger(name)
    if (masking := _redacting()) not in made.filters:
        made.addFilter(masking)
    return made


@functools.cache
def _redacting() -> logging.Filter:
    """The one filter every fscas logger shares: a record's message, credentials masked."""
    import logging

    class Redacting(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.msg, record.args = redact(record.getMessage()), None
            return True

    return Redacting()
