"""A world for Claude runs through the daemon: the real CLI, a fake Messages API, a home and a
work directory for the CLI, daemon configs to match, and the helpers the tests share."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any

import attrs
from ccx_testing import RunRecord, WireClient, make_config, wait_until, zombie_children
from claude_fake_api import FakeApi
from claude_testing import OFFLINE_ENV

from cc_executor.executor.config.claude import ClaudeConfig
from cc_executor.executor.config.server import ServerConfig
from cc_executor.supervision.testing import marked_processes

# Every I/O test is bounded; a CLI run takes about a second against the fake API.
BOUND = 60.0
KEY_VAR = "CCX_TEST_FAKE_ANTHROPIC_KEY"


@attrs.frozen
class ClaudeWorld:
    """A fake API, a home for the CLI and a directory to work in; builds daemon configs."""

    cli: Path
    api: FakeApi
    tmp: Path

    @property
    def work(self) -> Path:
        return self.tmp / "work"

    def lingering_cli(self) -> tuple[Path, Path]:
        """A wrapper that runs the real CLI, then lingers with a child that ignores SIGINT (a
        background job of a non-interactive shell does), and the file it writes that child's
        pid to: the real CLI cannot be made to hang after its result on cue."""
        wrapper = self.tmp / "lingering-claude"
        pidfile = self.work / "linger.pid"
        script = f'#!/bin/sh\n"{self.cli}" "$@"\nsleep 300 &\necho $! > {pidfile}\nwait\n'
        wrapper.write_text(script)
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        return wrapper, pidfile

    def config(self, **changes: Any) -> ServerConfig:
        claude = ClaudeConfig(
            binary=str(self.cli),
            base_url=self.api.base_url,
            api_key_env=KEY_VAR,
            env={
                **OFFLINE_ENV,
                "HOME": str(self.tmp / "home"),
                "CLAUDE_CONFIG_DIR": str(self.tmp / "config"),
            },
            post_result_grace=5.0,
            interrupt_grace=5.0,
        )
        return make_config(claude=attrs.evolve(claude, **changes))


def typed(client: WireClient, run: str) -> list[dict[str, Any]]:
    """The run's `claude.event` params, in the order they came."""
    return [
        n["params"]
        for n in client.notifications
        if n["method"] == "claude.event" and n["params"]["run"] == run
    ]


async def start(client: WireClient, **params: Any) -> str:
    result = await client.call("claude", **params)
    assert result["status"] == "started", result
    return str(result["run"])


async def wait_typed(client: WireClient, run: str, kind: str) -> dict[str, Any]:
    """Receive until the run has sent a typed event of `kind`; return the first."""
    while True:
        for event in typed(client, run):
            if event["type"] == kind:
                return event
        await client.receive()


def read_pid(path: Path) -> int:
    return int(path.read_text())


def assert_nothing_left(run: str) -> None:
    assert not marked_processes(run), f"processes of run {run} survived"


async def finish(client: WireClient, run: str) -> RunRecord:
    record = await client.wait_completed(run)
    await wait_until(lambda: not marked_processes(run), bound=10)
    return record


def notices(client: WireClient, run: str, method: str) -> list[dict[str, Any]]:
    """The params of the run's `method` notifications so far, in order."""
    return [
        n["params"]
        for n in client.notifications
        if n["method"] == method and n["params"].get("run") == run
    ]


async def wait_notice(
    client: WireClient, run: str, method: str, count: int = 1, **match: Any
) -> dict[str, Any]:
    """Receive until the run has sent `count` `method` notifications whose params include
    `match`; return the last of those."""
    while True:
        found = [
            p for p in notices(client, run, method) if all(p.get(k) == v for k, v in match.items())
        ]
        if len(found) >= count:
            return found[count - 1]
        await client.receive()


def session_events(client: WireClient, run: str) -> list[dict[str, Any]]:
    """The run's sequenced events as the client got them (output, session notices, ...)."""
    return client.runs[run].events if run in client.runs else []


def reap_zombies() -> None:
    """Reap this process's zombie children (WNOHANG: they are dead already)."""
    for pid in zombie_children(os.getpid()):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def daemon_env(world: ClaudeWorld) -> dict[str, str]:
    """The world's Claude settings as a daemon process reads them (CCX_CLAUDE_*)."""
    config = world.config().claude
    return {
        "CCX_CLAUDE_BINARY": config.binary,
        "CCX_CLAUDE_BASE_URL": str(config.base_url),
        "CCX_CLAUDE_API_KEY_ENV": str(config.api_key_env),
        "CCX_CLAUDE_ENV": ",".join(f"{k}={v}" for k, v in config.env.items()),
    }
