"""Fixtures the plumbing tests share."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_plumbing import Probe


@pytest.fixture
async def probe(settings_factory: Any, backend: str) -> Any:
    """A set-up `Probe` (its tables made) on the test's backend, disposed afterwards."""
    probe = Probe(settings_factory(backend))
    await probe.setup()
    yield probe
    await probe.db.dispose()
