"""Shared fixtures: the vectors directory beside the repository (../shared/vectors)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FSCAS_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """The Deadline test vectors: {"manifests": ..., "xxh128": ...}."""
    folder = SHARED / "vectors"
    if not folder.is_dir():
        pytest.fail(f"test vectors not found at {folder} (set FSCAS_SHARED)")
    return {name: json.loads((folder / f"{name}.json").read_text()) for name in ("manifests", "xxh128")}
