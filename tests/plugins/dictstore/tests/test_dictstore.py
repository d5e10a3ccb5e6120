"""The conformance suite on the example backend, as a third-party package runs it."""

from __future__ import annotations

from typing import Any

import pytest

from fscas.conformance.testing import BackendSuite


class TestDictStore(BackendSuite):
    @pytest.fixture
    def store_target(self) -> tuple[str, dict[str, Any]]:
        return "dictstore://bucket/prefix", {}
