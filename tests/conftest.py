"""Fixtures for every test."""

from __future__ import annotations

from pathlib import Path

import ccx_testing
import pytest


@pytest.fixture(autouse=True)
def state_under_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test daemons keep their state under the test's own tmp_path."""
    monkeypatch.setattr(ccx_testing, "STATE_ROOT", str(tmp_path))
