"""Shared output helpers of the CLI: JSON on stdout, progress and warnings on stderr."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

__all__ = ["emit_json", "progress_bar", "warn"]


def emit_json(obj: Any) -> None:
    """Print one JSON document on stdout (non-ASCII kept; lone surrogates escaped)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=True, sort_keys=True) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """Print a warning on stderr."""
    print(f"fscas: warning: {message}", file=sys.stderr)


def progress_bar(desc: str) -> Callback | None:
    """A tqdm bar in bytes on stderr when stderr is a terminal, else None (no progress)."""
    if not sys.stderr.isatty():
        return None
    from fsspec.callbacks import TqdmCallback  # lazily: fsspec costs 60 ms of start-up

    return TqdmCallback(tqdm_kwargs={"desc": desc, "unit": "B", "unit_scale": True,
                                     "unit_divisor": 1024, "file": sys.stderr, "leave": False})
