"""Every ```python example of docs/client.md runs, as written, against a live daemon."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import trio
from ccx_testing import make_config, start_daemon
from claude_world import ClaudeWorld

from cc_executor.executor.client import open_connection

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
EXAMPLES = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.MULTILINE | re.DOTALL)
DOC_URL = "ws://127.0.0.1:8003/"


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
async def test_example_runs(
    request: pytest.FixtureRequest, nursery: trio.Nursery, source: str
) -> None:
    if source.startswith("# needs: claude"):
        # A daemon that runs the real CLI against the fake API (tests/claude_world.py).
        world: ClaudeWorld = request.getfixturevalue("world")
        served = await start_daemon(nursery, world.config())
    else:
        served = await start_daemon(nursery, make_config())
    if source.startswith("# needs: durable"):
        async with open_connection(served.url) as conn:
            if not conn.supports_durable:
                pytest.skip("the daemon does not announce durable runs")
    assert DOC_URL in source
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-c", source.replace(DOC_URL, served.url)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout, "an example should show something"
