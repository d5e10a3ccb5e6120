"""Where fscas keeps its local caches: one folder per user, shared by every store and process."""

from __future__ import annotations

import os

__all__ = ["default_cache_dir"]


def default_cache_dir() -> str:
    """`$XDG_CACHE_HOME/fscas`, or `~/.cache/fscas`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fscas")
