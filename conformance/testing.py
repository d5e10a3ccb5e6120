"""`BackendSuite`: subclass it in a backend's own tests to run every conformance check as a test."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fscas.conformance.suite import CHECKS, Target, run_check

__all__ = ["BackendSuite"]


class BackendSuite:
    """Subclass and override the `store_target` fixture; each check runs under its own prefix.

    A check the backend declares unsupported is skipped with its reason, never passed.
    """

    @pytest.fixture
    def store_target(self) -> tuple[Target, dict[str, Any]]:
        """(store URL, backend options) of an existing bucket to test; or ((fsspec filesystem, root), {})."""
        raise NotImplementedError("override store_target in the backend's test class")

    @pytest.mark.parametrize("check", list(CHECKS))
    def test_conformance(self, check: str, store_target: tuple[Target, dict[str, Any]]) -> None:
        url, options = store_target
        result = asyncio.run(run_check(url, check, options))
        if result.status == "not-supported":
            pytest.skip(f"not supported: {result.detail}")
        assert result.status == "pass", result.detail
