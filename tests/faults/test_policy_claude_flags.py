"""The `claude` method's path flags, `--settings` and environment are checked by value.

The CLI here is a stand-in script that writes its argv, one argument a line, to a file: a
refusal leaves no file, an accepted request shows exactly what the CLI was given (``--add-dir``
rewritten to the resolved directory).  The real CLI reads these flags the same way (variadic
``--add-dir <directories...>`` and ``--mcp-config <configs...>``, see ``claude --help``).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
import trio
from ccx_testing import RpcError, make_config, open_client, start_daemon
from trio_websocket import open_websocket_url

from cc_executor.executor.config.claude import DEFAULT_ALLOWED_FLAGS, ClaudeConfig
from cc_executor.executor.config.server import ServerConfig, with_policy_file
from cc_executor.protocol import ErrorCode

BOUND = 20.0


@attrs.frozen
class World:
    cli: Path  # the stand-in CLI
    argv_file: Path  # where it writes its argv
    root: Path  # the cwd root
    work: Path  # a cwd inside it
    outside: Path  # a directory outside the root
    listed: Path  # an MCP config the operator listed

    def config(self, policy: str = "", **claude: Any) -> ServerConfig:
        path = self.root.parent / "policy.toml"
        path.write_text(policy)
        config = make_config(claude=ClaudeConfig(binary=str(self.cli), **claude))
        return with_policy_file(config, str(path))

    def given(self) -> list[str]:
        """What the CLI was started with (after the program name)."""
        return self.argv_file.read_text().splitlines()


@pytest.fixture
def world(tmp_path: Path) -> World:
    argv_file = tmp_path / "argv"
    cli = tmp_path / "bin" / "claude"
    cli.parent.mkdir()
    cli.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{argv_file}'\n")
    cli.chmod(0o755)
    root = tmp_path / "root"
    work = root / "work"
    (work / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "escape").symlink_to(outside)
    listed = tmp_path / "mcp.json"
    listed.write_text('{"mcpServers": {}}')
    return World(cli, argv_file, root, work, outside, listed)


async def refused(client: Any, world: World, extra_args: list[str], **params: Any) -> RpcError:
    params.setdefault("cwd", str(world.work))
    error: RpcError = await client.call_error(
        "claude", prompt="hi", extra_args=extra_args, **params
    )
    assert error.code == ErrorCode.POLICY_REFUSED, (extra_args, error.message)
    # data.rule names the rule, once: the message does not repeat it.
    assert "rule:" not in error.message
    assert error.data["rule"] not in error.message
    assert not world.argv_file.exists()
    return error


async def accepted(client: Any, world: World, extra_args: list[str], **params: Any) -> list[str]:
    params.setdefault("cwd", str(world.work))
    run = (await client.call("claude", prompt="hi", extra_args=extra_args, **params))["run"]
    await client.wait_completed(run)
    given = world.given()
    world.argv_file.unlink()
    return given


async def test_mcp_config_names_only_listed_files(nursery: trio.Nursery, world: World) -> None:
    config = world.config(mcp_configs=(str(world.listed),))
    served = await start_daemon(nursery, config)
    inline = json.dumps({"mcpServers": {"x": {"command": "sh", "args": ["-c", "id"]}}})
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            for extra in (
                ["--mcp-config", inline],
                [f"--mcp-config={inline}"],
                ["--mcp-config", str(world.outside / "mcp.json")],
                ["--mcp-config", str(world.listed), str(world.outside / "mcp.json")],
                ["--effort", "high", "--mcp-config", "mcp.json"],
            ):
                error = await refused(client, world, extra)
                assert error.data["rule"] == "claude.mcp_configs"
                assert error.data["flag"] == "--mcp-config"
                assert error.data["allowed"] == [str(world.listed)]
            given = await accepted(client, world, ["--mcp-config", str(world.listed)])
    assert given[-4:] == ["--mcp-config", str(world.listed), "--", "hi"]


async def test_mcp_config_with_nothing_listed_is_refused(
    nursery: trio.Nursery, world: World
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            error = await refused(client, world, ["--mcp-config", str(world.listed)])
    assert error.data["allowed"] == []
    assert "none are listed" in error.message


async def test_add_dir_stays_inside_the_cwd_roots(nursery: trio.Nursery, world: World) -> None:
    served = await start_daemon(nursery, world.config(f'cwd_roots = ["{world.root}"]\n'))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            for extra in (
                ["--add-dir", "/"],
                ["--add-dir", "../.."],
                ["--add-dir", "escape"],
                ["--add-dir", str(world.outside)],
                [f"--add-dir={world.outside}"],
                ["--add-dir", "sub", str(world.outside)],
            ):
                error = await refused(client, world, extra)
                assert error.data["rule"] == "cwd_roots"
                assert error.data["flag"] == "--add-dir"
                assert error.data["roots"] == [str(world.root)]
            given = await accepted(client, world, ["--add-dir", "sub", "..", "--effort", "high"])
            assert given[-7:] == [
                "--add-dir",
                str(world.work / "sub"),
                str(world.root),
                "--effort",
                "high",
                "--",
                "hi",
            ]
            given = await accepted(client, world, ["--add-dir=sub"])
    assert f"--add-dir={world.work / 'sub'}" in given


async def test_add_dir_is_never_the_root_unless_a_root_is(
    nursery: trio.Nursery, world: World
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            for value in ("/", "/..", "../../../../../../../../.."):
                error = await refused(client, world, ["--add-dir", value])
                assert error.data["rule"] == "cwd_roots"
                assert error.data["roots"] == []
            given = await accepted(client, world, ["--add-dir", str(world.outside)])
    assert given[given.index("--add-dir") + 1] == str(world.outside)


async def test_add_dir_root_with_a_root_of_slash(nursery: trio.Nursery, world: World) -> None:
    served = await start_daemon(nursery, world.config('cwd_roots = ["/"]\n'))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            given = await accepted(client, world, ["--add-dir", "/"])
    assert given[given.index("--add-dir") + 1] == "/"


async def test_a_claude_rules_own_roots_hold_for_add_dir(
    nursery: trio.Nursery, world: World
) -> None:
    policy = f'cwd_roots = ["/"]\n[commands."{world.cli}"]\ncwd_roots = ["{world.root}"]\n'
    served = await start_daemon(nursery, world.config(policy))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            error = await refused(client, world, ["--add-dir", str(world.outside)])
    assert error.data["rule"] == f"commands.{world.cli}.cwd_roots"


async def test_settings_is_refused_unless_sandboxed(nursery: trio.Nursery, world: World) -> None:
    # Even an operator who lists --settings among the allowed flags gets the sandbox rule:
    # the file can set defaultMode bypassPermissions, allow every tool, add hooks.
    flags = (*DEFAULT_ALLOWED_FLAGS, "--settings")
    settings = json.dumps({"permissions": {"defaultMode": "bypassPermissions"}})
    served = await start_daemon(nursery, world.config(allowed_flags=flags))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            for extra in (["--settings", settings], [f"--settings={settings}"]):
                error = await refused(client, world, extra)
                assert error.data == {"rule": "claude.sandboxed", "flag": "--settings"}
            # Plain execute of the CLI follows the same sandbox rule.
            error = await client.call_error(
                "execute", argv=[str(world.cli), "--settings", settings, "-p", "hi"]
            )
            assert error.data == {"rule": "claude.sandboxed", "flag": "--settings"}


async def test_settings_on_a_sandboxed_daemon(nursery: trio.Nursery, world: World) -> None:
    flags = (*DEFAULT_ALLOWED_FLAGS, "--settings")
    served = await start_daemon(nursery, world.config(allowed_flags=flags, sandboxed=True))
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            given = await accepted(client, world, ["--settings", "{}"])
    assert given[given.index("--settings") + 1] == "{}"


@pytest.mark.parametrize(
    "name", ["NODE_OPTIONS", "CLAUDE_CONFIG_DIR", "CLAUDE_ENV_FILE", "LD_PRELOAD", "BASH_ENV"]
)
async def test_the_environment_refuses_start_up_variables(
    nursery: trio.Nursery, world: World, name: str
) -> None:
    served = await start_daemon(nursery, world.config())
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            error = await refused(client, world, [], env={name: "/tmp/x"})
    assert error.data == {"rule": "env.startup_allow", "variable": name}


async def test_a_start_up_variable_the_policy_names_reaches_the_cli(
    nursery: trio.Nursery, world: World
) -> None:
    cli = world.cli
    cli.write_text(f"#!/bin/sh\necho \"$CLAUDE_CONFIG_DIR\" > '{world.argv_file}'\n")
    served = await start_daemon(
        nursery, world.config('[env]\nstartup_allow = ["CLAUDE_CONFIG_DIR"]\n')
    )
    with trio.fail_after(BOUND):
        async with open_client(served.url) as client:
            given = await accepted(client, world, [], env={"CLAUDE_CONFIG_DIR": "/srv/cfg"})
    assert given == ["/srv/cfg"]


async def test_the_mcp_claude_tool_goes_through_the_same_door(
    nursery: trio.Nursery, world: World
) -> None:
    served = await start_daemon(nursery, world.config())
    ids = itertools.count(1)
    with trio.fail_after(BOUND):
        async with open_websocket_url(served.url, subprotocols=["mcp"]) as ws:

            async def request(method: str, params: dict[str, Any]) -> dict[str, Any]:
                msg_id = next(ids)
                message = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}
                await ws.send_message(orjson.dumps(message).decode())
                while True:
                    reply: dict[str, Any] = orjson.loads(await ws.get_message())
                    if reply.get("id") == msg_id:
                        return reply

            await request("initialize", {"protocolVersion": "2025-06-18"})
            await ws.send_message('{"jsonrpc":"2.0","method":"notifications/initialized"}')
            arguments = {"prompt": "hi", "cwd": str(world.work), "extra_args": ["--add-dir", "/"]}
            reply = await request("tools/call", {"name": "claude", "arguments": arguments})
    result = reply["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["data"]["rule"] == "cwd_roots"
    assert not world.argv_file.exists()
