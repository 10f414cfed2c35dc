"""Fixtures for the executor's end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from ccx_testing import Served, make_config, start_daemon
from claude_fake_api import serve_fake_api
from claude_testing import claude_cli
from claude_world import KEY_VAR, ClaudeWorld


@pytest.fixture
async def served(nursery: trio.Nursery) -> Served:
    """A daemon on 127.0.0.1, port 0, served in-process; the nursery's end stops it."""
    return await start_daemon(nursery, make_config())


@pytest.fixture(scope="session")
def cli() -> Path:
    """The real Claude Code CLI (installed on first use; see claude_testing.py)."""
    return claude_cli()


@pytest.fixture
def world(cli: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClaudeWorld]:
    """The CLI, a fake API serving it, and directories for it under tmp_path."""
    monkeypatch.setenv(KEY_VAR, "dummy")
    for name in ("home", "config", "work"):
        (tmp_path / name).mkdir()
    with serve_fake_api() as api:
        yield ClaudeWorld(cli, api, tmp_path)
