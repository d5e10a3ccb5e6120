"""What fsspec implementations raise (builtins, asyncssh, httpx, botocore, ftplib), as fscas errors."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

from fscas.backends.base import at
from fscas.errors import (
    AccessDenied,
    ConfigError,
    CredentialsRefused,
    ObjectExists,
    ObjectNotFound,
    StoreError,
    Unreachable,
    redact,
)

__all__ = ["ftp_normalized", "translated"]


@contextlib.contextmanager
def ftp_normalized() -> Iterator[None]:
    """ftplib answers "no such file" and "file exists" alike, with its 550 error: tell them apart,
    as the builtins every other implementation raises."""
    try:
        yield
    except Exception as e:
        if type(e).__module__ == "ftplib" and str(e).startswith("550"):
            text = str(e).lower()
            if "exists" in text:
                raise FileExistsError(errno.EEXIST, str(e)) from e
            if "no such" in text or "not found" in text:
                raise FileNotFoundError(errno.ENOENT, str(e)) from e
        raise


_S3_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
_SSH_CONNECTION_ERRORS = {"PermissionDenied", "HostKeyNotVerifiable", "ConnectionLost", "DisconnectError"}
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT,
                       errno.ECONNRESET, errno.EPIPE}


@contextlib.contextmanager
def translated(url: str, key: str) -> Iterator[None]:
    """Map what fsspec implementations raise (builtins, asyncssh, httpx, ftplib) to fscas errors."""
    try:
        yield
    except StoreError:
        raise
    except Exception as e:
        raise _ours(url, key, e) from e


def _ours(url: str, key: str, e: Exception) -> StoreError | ConfigError:
    cause: BaseException | None = e
    while cause is not None:  # sshfs and s3fs re-raise the SDK's error as a builtin: look at the cause
        if type(cause).__name__ in _SSH_CONNECTION_ERRORS and isinstance(cause, Exception):
            return _sdk_error(url, key, cause)
        response = getattr(cause, "response", None)  # botocore's ClientError
        code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        if code in _S3_CREDENTIAL_CODES:
            return CredentialsRefused(f"{url}: credentials refused ({code})")
        cause = cause.__cause__
    if isinstance(e, FileNotFoundError):
        return ObjectNotFound(f"{at(url, key)}: not found")
    if isinstance(e, FileExistsError):
        return ObjectExists(f"{at(url, key)}: already exists")
    if isinstance(e, PermissionError):
        return AccessDenied(f"{at(url, key)}: permission denied")
    if isinstance(e, (ConnectionError, TimeoutError)):
        return Unreachable(f"{at(url, key)}: endpoint unreachable ({type(e).__name__})")
    return _sdk_error(url, key, e)


def _sdk_error(url: str, key: str, e: Exception) -> StoreError | ConfigError:
    name, module = type(e).__name__, type(e).__module__.split(".")[0]
    text = redact(str(e)).splitlines()[0] if str(e) else name
    if module == "asyncssh":
        if name in ("PermissionDenied", "HostKeyNotVerifiable"):
            cls = CredentialsRefused if name == "PermissionDenied" else AccessDenied
            return cls(f"{url}: {'credentials refused' if name == 'PermissionDenied' else 'host key not trusted'}"
                       f" ({text})")
        if name in ("ConnectionLost", "DisconnectError"):
            return Unreachable(f"{at(url, key)}: connection lost ({text})")
    if module == "httpx" and name in ("ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError"):
        return Unreachable(f"{at(url, key)}: endpoint unreachable ({name})")
    if module == "botocore" and name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError",
                                          "ReadTimeoutError"):
        return Unreachable(f"{at(url, key)}: endpoint unreachable ({name})")
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status == 401:
        return CredentialsRefused(f"{url}: credentials refused (401)")
    if status == 403:
        return AccessDenied(f"{at(url, key)}: access denied (403)")
    if module == "ftplib" or name.startswith("error_"):
        code = text[:3]
        if code == "530":
            return CredentialsRefused(f"{url}: credentials refused ({text})")
        if code == "550":
            return ObjectNotFound(f"{at(url, key)}: not found ({text})")
    if isinstance(e, OSError) and e.errno in _UNREACHABLE_ERRNOS:
        return Unreachable(f"{at(url, key)}: endpoint unreachable ({e.strerror or name})")
    if isinstance(e, (ValueError, TypeError)) and key == "":
        return ConfigError(f"{url}: cannot open this filesystem: {text}")
    if isinstance(e, NotImplementedError):
        return StoreError(f"{at(url, key)}: the filesystem does not support this ({text})")
    return StoreError(f"{at(url, key)}: {name}: {text}")
