"""Fixtures for the executor's end-to-end tests."""

from __future__ import annotations

import pytest
import trio
from ccx_testing import Served, make_config, start_daemon


@pytest.fixture
async def served(nursery: trio.Nursery) -> Served:
    """A daemon on 127.0.0.1, port 0, served in-process; the nursery's end stops it."""
    return await start_daemon(nursery, make_config())
