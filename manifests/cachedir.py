"""Where fscas keeps its local caches and its default store: one folder per user, shared by every
store and process. `$XDG_CACHE_HOME` / `$XDG_DATA_HOME` win where set (on every platform, as users of
containers and CI set them); otherwise the platform's own folders by `platformdirs` (Deadline's
workers run Windows, where a `~/.cache` path is wrong)."""

from __future__ import annotations

import os

__all__ = ["default_cache_dir", "default_data_dir"]


def default_cache_dir() -> str:
    """`$XDG_CACHE_HOME/fscas`, else the platform's cache folder: `~/.cache/fscas` (Linux),
    `~/Library/Caches/fscas` (macOS), `%LOCALAPPDATA%\\fscas\\Cache` (Windows)."""
    import platformdirs

    if base := os.environ.get("XDG_CACHE_HOME"):
        return os.path.join(base, "fscas")
    return platformdirs.user_cache_dir("fscas", appauthor=False)


def default_data_dir() -> str:
    """`$XDG_DATA_HOME/fscas`, else the platform's data folder: `~/.local/share/fscas` (Linux),
    `~/Library/Application Support/fscas` (macOS), `%LOCALAPPDATA%\\fscas` (Windows)."""
    import platformdirs

    if base := os.environ.get("XDG_DATA_HOME"):
        return os.path.join(base, "fscas")
    return platformdirs.user_data_dir("fscas", appauthor=False)
