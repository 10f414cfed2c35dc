"""docs/migrating.md's flags: each of the original CC-Executor's behaviours back with one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from ccx_testing import make_config, run_daemon, start_daemon
from trio_websocket import open_websocket_url

from cc_executor.executor.cli import build_parser, serve_config
from cc_executor.executor.config.server import (
    DEFAULT_PASS_ENV,
    ServerConfig,
    config_from_env,
    with_pass_env_expanded,
)

SERVE = [sys.executable, "-m", "cc_executor.executor", "serve"]


async def output_of(port: int, params: dict[str, object]) -> list[str]:
    """Run one command as an original client does (on /ws/mcp) and return its stdout lines."""
    async with open_websocket_url(f"ws://127.0.0.1:{port}/ws/mcp") as ws:
        await ws.get_message()
        await ws.send_message(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "execute", "params": params})
        )
        lines = []
        while True:
            frame = json.loads(await ws.get_message())
            assert "error" not in frame, frame
            if frame.get("method") == "process.output" and frame["params"]["type"] == "stdout":
                lines.append(frame["params"]["data"])
            if frame.get("method") == "process.completed":
                return lines


def test_a_glob_in_the_pass_list_passes_what_it_matches_but_reserved_names() -> None:
    env = {"PATH": "/bin", "LC_A": "1", "LC_B": "2", "CCX_TOKENS": "t", "CLAUDECODE": "1"}
    every = with_pass_env_expanded(ServerConfig(pass_env=("*",)), env)
    assert every.pass_env == ("LC_A", "LC_B", "PATH")
    some = with_pass_env_expanded(ServerConfig(pass_env=("HOME", "LC_*", "LC_A")), env)
    assert some.pass_env == ("HOME", "LC_A", "LC_B")
    named = with_pass_env_expanded(ServerConfig(pass_env=("CCX_TOKENS",)), env)
    assert named.pass_env == ("CCX_TOKENS",)  # named outright, as before
    assert with_pass_env_expanded(ServerConfig(), env).pass_env == DEFAULT_PASS_ENV


def test_the_flags_and_variables_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLD_SETTING", "x")
    flags = ["--pass-env", "*", "--cwd", str(tmp_path), "--host", "0.0.0.0", "--insecure-listen"]
    args = build_parser().parse_args(["serve", *flags, "--allow-shell"])
    config = serve_config(args)
    assert "OLD_SETTING" in config.pass_env
    assert not any(name.startswith("CCX_") for name in config.pass_env)
    assert config.cwd == str(tmp_path)
    assert (config.host, config.insecure_listen, config.allow_shell) == ("0.0.0.0", True, True)
    from_env = config_from_env({"CCX_CWD": str(tmp_path), "CCX_PASS_ENV": "OLD_*"})
    assert from_env.cwd == str(tmp_path)
    assert from_env.pass_env == ()  # a glob matches the environment it is given


def test_the_originals_keepalive_back_with_ping_interval_and_timeout() -> None:
    args = build_parser().parse_args(["serve", "--ping-interval", "20", "--ping-timeout", "30"])
    transport = serve_config(args).transport
    assert (transport.ping_interval, transport.ping_timeout) == (20.0, 30.0)
    from_env = config_from_env({"CCX_PING_INTERVAL": "20"}).transport
    assert (from_env.ping_interval, from_env.ping_timeout) == (20.0, 30.0)
    assert ServerConfig().transport.ping_interval == 0  # none by default


def test_a_cwd_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SERVE, "--cwd", str(tmp_path / "missing")],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "is not a directory" in result.stderr.decode()


async def test_whole_environment_and_fixed_cwd_with_pass_env_star_and_cwd(tmp_path: Path) -> None:
    env = {"OLD_CLIENT_SETTING": "kept", "CCX_TOKENS_LIKE": "never"}
    with trio.fail_after(60):
        async with run_daemon("--pass-env", "*", "--cwd", str(tmp_path), env=env) as daemon:
            environment = await output_of(daemon.port, {"command": "env"})
            where = await output_of(daemon.port, {"command": "pwd"})
    assert "OLD_CLIENT_SETTING=kept\n" in environment
    assert not [line for line in environment if line.startswith("CCX_TOKENS_LIKE")]
    assert where == [f"{tmp_path}\n"]


async def test_the_default_is_the_pass_list_and_the_daemons_cwd(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config())
    with trio.fail_after(20):
        environment = await output_of(served.port, {"command": "env"})
    names = {line.split("=", 1)[0] for line in environment}
    assert {"CCX_RUN_ID", "CCX_DAEMON"} <= names  # the daemon marks its runs
    assert names - {"CCX_RUN_ID", "CCX_DAEMON"} <= set(DEFAULT_PASS_ENV)


async def test_a_shell_with_allow_shell_and_shell_true(nursery: trio.Nursery) -> None:
    served = await start_daemon(nursery, make_config(allow_shell=True))
    with trio.fail_after(20):
        lines = await output_of(served.port, {"command": "echo a; echo b | tr b c", "shell": True})
        split = await output_of(served.port, {"command": "echo a; echo b"})
    assert lines == ["a\n", "c\n"]
    assert split == ["a; echo b\n"]  # without it, like the original: shlex.split and exec
