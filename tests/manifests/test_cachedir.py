"""The per-user folders: `$XDG_*_HOME` where set, else the platform's own (never a Linux path on Windows)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fscas.manifests.cachedir import default_cache_dir, default_data_dir


def test_xdg_folders_win_where_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "d"))
    assert default_cache_dir() == str(tmp_path / "c" / "fscas")
    assert default_data_dir() == str(tmp_path / "d" / "fscas")


def test_else_the_platform_folders_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    want = {"linux": (".cache/fscas", ".local/share/fscas"),
            "darwin": ("Library/Caches/fscas", "Library/Application Support/fscas")}[sys.platform]
    assert (default_cache_dir(), default_data_dir()) == tuple(str(tmp_path / w) for w in want)
