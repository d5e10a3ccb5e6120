"""Manifest paths meet the disk here: anything that could land outside its root is refused."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from fscas.errors import ConfigError, UnsafePathError

__all__ = ["check_folder_target", "check_layout", "check_relative", "contains", "safe_join", "safe_path", "within"]


def check_relative(rel: str, root: str) -> None:
    """Refuse a manifest path that is not relative to its root in every OS's syntax.

    A manifest path is `/`-separated and relative: a leading separator, a drive letter (`C:`, which
    Windows' path join lets replace the root), a UNC prefix, a backslash (a separator on Windows),
    `.`/`..`/empty segments or a NUL could make it land outside `root` on some machine, so the
    manifest is refused before any folder or path-mapping rule is applied to it.

    Raises:
        UnsafePathError: naming the path and the root.
    """
    if (not rel or rel[0] == "/" or "\\" in rel or "\x00" in rel or "//" in rel or rel[-1] == "/"
            or (len(rel) > 1 and rel[1] == ":" and rel[0].isascii() and rel[0].isalpha())
            or any(p in (".", "..") for p in rel.split("/"))):
        raise UnsafePathError(f"{rel!r}: manifest path is not relative to its root {root} (absolute, a drive "
                              "letter, '..', '\\\\' or NUL)")


def safe_path(root: str, rel: str) -> str:
    """`root/rel` as a string for a manifest path that stays below `root` (the per-file form of the
    transfers, where pathlib's objects cost more than the syscalls they lead to).

    Raises:
        UnsafePathError: `rel` is not relative to `root` in every OS's syntax (`check_relative`).
    """
    check_relative(rel, root)
    return os.path.join(root, rel if os.sep == "/" else rel.replace("/", os.sep))


def safe_join(root: Path, rel: str) -> Path:
    """`root / rel` for a manifest path that stays below `root` (`safe_path` as a Path).

    Raises:
        UnsafePathError: `rel` is empty, absolute, has `.`/`..`/empty segments, a backslash or a NUL.
    """
    return Path(safe_path(os.fspath(root), rel))


def contains(root_real: str, real: str) -> bool:
    """True when the resolved path `real` is the resolved `root_real` or below it."""
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def within(path: str | os.PathLike[str], root_real: str) -> bool:
    """True when the real location of `path` (links resolved) is `root_real` or below it."""
    return contains(root_real, os.path.realpath(path))


def check_layout(paths: Iterable[str]) -> None:
    """Refuse duplicate paths and a path that is both a file and a folder of another path.

    Raises:
        UnsafePathError: naming the first offending path.
    """
    files: set[str] = set()
    folders: set[str] = set()
    for rel in paths:
        if rel in files:
            raise UnsafePathError(f"{rel!r}: listed twice in the manifest")
        if rel in folders:
            raise UnsafePathError(f"{rel!r}: is a file in the manifest and a folder of another path")
        files.add(rel)
        parts = rel.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in files:
                raise UnsafePathError(f"{rel!r}: its folder {folder!r} is a file in the manifest")
            folders.add(folder)


def check_folder_target(dest: Path) -> None:
    """Refuse a destination folder that is a file, or lies below one, before anything is written.

    Raises:
        ConfigError: naming the file in the way.
    """
    for p in (dest, *dest.parents):
        if os.path.lexists(p):
            if not p.is_dir():
                raise ConfigError(f"{dest}: is a file, not a folder" if p == dest
                                  else f"{dest}: cannot be a folder, {p} is a file")
            return
