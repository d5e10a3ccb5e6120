"""Run with `pytest --pyargs fscas.conformance --store-url URL [--store-url URL ...]`.

Without `--store-url` the suite runs on `memory://` and a temporary `file://` folder.
"""

from __future__ import annotations

from typing import Any

import pytest

from fscas.conformance.testing import BackendSuite


class TestStoreUrl(BackendSuite):
    @pytest.fixture
    def store_target(self, fscas_store_url: str) -> tuple[str, dict[str, Any]]:
        return fscas_store_url, {}
