"""Shared output helpers of the CLI: JSON on stdout, progress and warnings on stderr, nothing unmasked."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fscas.errors import redact

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

__all__ = ["emit_json", "progress_bar", "set_secrets", "warn"]

_SECRETS: set[str] = set()  # this process's command line and environment: set once by main()


def set_secrets(secrets: Iterable[str]) -> None:
    """The credential values to mask in everything the CLI prints (see `fscas.errors.redact`)."""
    _SECRETS.clear()
    _SECRETS.update(secrets)


def emit_json(obj: Any) -> None:
    """Print one JSON document on stdout (non-ASCII kept; lone surrogates escaped).

    Known secret values are masked; patterns are not applied, so a file named `key=x` stays intact.
    """
    text = json.dumps(obj, ensure_ascii=True, sort_keys=True)
    for secret in _SECRETS:
        text = text.replace(secret, "***") if len(secret) >= 4 else text
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """Print a warning on stderr."""
    print(f"fscas: warning: {redact(message, _SECRETS)}", file=sys.stderr)


def progress_bar(desc: str) -> Callback | None:
    """A tqdm bar in bytes on stderr when stderr is a terminal, else None (no progress)."""
    if not sys.stderr.isatty():
        return None
    from fsspec.callbacks import TqdmCallback  # lazily: fsspec costs 60 ms of start-up

    return TqdmCallback(tqdm_kwargs={"desc": redact(desc, _SECRETS), "unit": "B", "unit_scale": True,
                                     "unit_divisor": 1024, "file": sys.stderr, "leave": False})
