"""The real Claude Code CLI as an MCP client of the daemon: it speaks WebSocket MCP itself
(an MCP server of ``"type": "ws"`` in its ``--mcp-config``), no bridge needed.

The fake Messages API makes the CLI call a tool (``[mcp:<tool> <input>]``); every frame between
the CLI and the daemon passes through the recording proxy and is checked for conformance.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
import trio
from ccx_testing import Served
from claude_testing import OFFLINE_ENV
from claude_world import BOUND, ClaudeWorld
from mcp_testing import check_frames, recording_proxy

pytestmark = pytest.mark.slow


def _prompt(tool: str, arguments: dict[str, Any]) -> str:
    encoded = base64.b64encode(json.dumps(arguments).encode()).decode()
    return f"[mcp:mcp__ccx__{tool} {encoded}]"


async def _claude(world: ClaudeWorld, url: str, prompt: str) -> list[dict[str, Any]]:
    """One `claude -p` run with the daemon as its MCP server `ccx`; its stream-json events."""
    config = world.tmp / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"ccx": {"type": "ws", "url": url}}}))
    env = {
        "PATH": os.environ["PATH"],
        **OFFLINE_ENV,
        "HOME": str(world.tmp / "home"),
        "CLAUDE_CONFIG_DIR": str(world.tmp / "config"),
        "ANTHROPIC_BASE_URL": world.api.base_url,
        "ANTHROPIC_API_KEY": "dummy",
    }
    argv = [str(world.cli), "-p", prompt, "--output-format", "stream-json", "--verbose"]
    argv += ["--mcp-config", str(config), "--allowedTools", "mcp__ccx"]
    done = await trio.run_process(
        argv,
        stdin=b"",
        capture_stdout=True,
        capture_stderr=True,
        env=env,
        cwd=world.work,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _tool_results(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        block
        for event in events
        if event["type"] == "user"
        for block in event["message"]["content"]
        if block.get("type") == "tool_result"
    ]


async def test_claude_code_connects_lists_and_calls_the_daemons_tools(
    served: Served, world: ClaudeWorld
) -> None:
    argv = ["sh", "-c", "echo from-claude; sleep 0.6; echo done"]
    with trio.fail_after(BOUND):
        async with recording_proxy(served.url) as (url, record):
            events = await _claude(world, url, _prompt("execute", {"argv": argv}))
            failed = await _claude(world, url, _prompt("read_output", {"run": "no-such-run"}))
    init = events[0]
    assert init["subtype"] == "init"
    assert init["mcp_servers"] == [{"name": "ccx", "status": "connected"}]
    assert {"mcp__ccx__execute", "mcp__ccx__control"} <= set(init["tools"])
    [result] = _tool_results(events)
    assert not result.get("is_error")
    assert "from-claude" in json.dumps(result["content"])
    assert events[-1]["subtype"] == "success"
    [refused] = _tool_results(failed)
    assert refused["is_error"] is True
    assert "no-such-run" in json.dumps(refused["content"])
    assert record.subprotocols == ["mcp", "mcp"]
    assert check_frames(record)["progress"] >= 1  # the CLI asks for progress; it gets it
