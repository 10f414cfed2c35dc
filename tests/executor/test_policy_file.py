"""The policy file: validation with clear errors, precedence, and each rule refusing over the wire.

Every refusal is checked twice: the error names its rule, and the command (which would create
a marker file) did not run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from ccx_testing import make_config, open_client, run_daemon, start_daemon

from cc_executor.executor.cli import main
from cc_executor.executor.config.claude import ClaudeConfig
from cc_executor.executor.config.policyfile import (
    FlagRules,
    LimitSet,
    PolicyFileError,
    load_policy,
    parse_policy,
)
from cc_executor.executor.config.server import (
    ConfigError,
    ServerConfig,
    config_from_env,
    validate,
    with_policy_file,
)
from cc_executor.executor.transport.frontdoor import Identity

FULL = """
sandboxed = false
allow_shell = true
unlisted_commands = "refuse"
cwd_roots = ["/srv/work", "/tmp"]

[commands.claude]
cwd_roots = ["/srv/repos"]
flags.forbid = ["--mcp-config"]

[commands.sh]
allowed = true
flags.allow = ["-e", "-c"]
flags.require = ["-e"]

[commands.rm]
allowed = false

[env]
pass = ["PATH", "HOME"]
request_allow = ["GIT_*", "APP_*"]
startup_allow = ["LD_LIBRARY_PATH", "CLAUDE_CONFIG_DIR"]

[claude]
mcp_configs = ["/etc/ccx/github-mcp.json"]

[limits]
concurrent_runs = 4
starts_per_minute = 30
max_output_bytes = 1073741824

[limits.identity.ci]
concurrent_runs = 16

[resources]
cpu_seconds = 3600
address_space_bytes = 8589934592
open_files = 1024
processes = 4096
"""


def test_a_full_policy_file_parses() -> None:
    loaded = parse_policy(FULL, "policy.toml")
    policy = loaded.policy
    assert loaded.allow_shell is True
    assert loaded.sandboxed is False
    assert loaded.pass_env == ("PATH", "HOME")
    assert policy.commands is not None
    assert set(policy.commands) == {"claude", "sh", "rm"}
    assert policy.commands["sh"].flags == FlagRules(allow=("-e", "-c"), require=("-e",))
    assert policy.commands["rm"].allowed is False
    assert policy.commands["claude"].cwd_roots == ("/srv/repos",)
    assert policy.request_env == ("GIT_*", "APP_*")
    assert policy.startup_env == ("LD_LIBRARY_PATH", "CLAUDE_CONFIG_DIR")
    assert loaded.mcp_configs == ("/etc/ccx/github-mcp.json",)
    assert policy.limits.for_identity("anyone") == LimitSet(4, 30, 1073741824)
    assert policy.limits.for_identity("ci") == LimitSet(16, 30, 1073741824)
    assert policy.resources.open_files == 1024


def test_the_documented_examples_parse() -> None:
    """The full example in docs/operations.md and the one in deploy/ are valid."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "operations.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    assert parse_policy(block, "docs/operations.md").policy.commands
    configmap = (root / "deploy" / "configmap.yaml").read_text()
    lines = configmap.split("policy.toml: |\n", 1)[1].splitlines()
    toml = "\n".join(line[4:] for line in lines if line.startswith("    ") or not line.strip())
    assert parse_policy(toml, "deploy/configmap.yaml").policy.limits.default.concurrent_runs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("allow_shell = ", "policy.toml: not valid TOML: "),
        (
            "alow_shell = true",
            "policy.toml: alow_shell: unknown key; expected one of sandboxed, allow_shell",
        ),
        (
            'allow_shell = "yes"',
            "policy.toml: allow_shell: got 'yes' (a string); expected true or false",
        ),
        (
            'unlisted_commands = "deny"',
            "policy.toml: unlisted_commands: got 'deny' (a string); expected \"refuse\" or",
        ),
        (
            'cwd_roots = ["srv/work"]',
            "policy.toml: cwd_roots: 'srv/work' is relative; expected absolute directories",
        ),
        (
            "[commands.claude]\nallowd = true",
            "policy.toml: commands.claude.allowd: unknown key; expected one of allowed, flags",
        ),
        (
            '[commands.claude]\nflags.forbid = ["dangerously"]',
            "policy.toml: commands.claude.flags: 'dangerously' is not a flag name",
        ),
        (
            "[commands.claude]\nflags.allow = [1]",
            "policy.toml: commands.claude.flags.allow: got [1] (an array); expected an array",
        ),
        (
            "commands = 3",
            "policy.toml: commands: got 3 (an integer); expected a table",
        ),
        (
            "[env]\npass = 'PATH'",
            "policy.toml: env.pass: got 'PATH' (a string); expected an array of non-empty",
        ),
        (
            '[env]\nstartup_allow = ["APP_MODE"]',
            "policy.toml: env.startup_allow: 'APP_MODE' is not a start-up variable (any request "
            "may set it); expected names such as LD_LIBRARY_PATH",
        ),
        (
            '[env]\nstartup_allow = ["LD_*"]',
            "policy.toml: env.startup_allow: 'LD_*' is a pattern; expected exact names",
        ),
        (
            '[claude]\nmcp_configs = ["mcp.json"]',
            "policy.toml: claude.mcp_configs: 'mcp.json' is relative; expected absolute file names",
        ),
        (
            '[claude]\nbinary = "/opt/claude"',
            "policy.toml: claude.binary: unknown key; expected one of mcp_configs",
        ),
        (
            "[[claude.permission_rules]]\nname = 'r'\ntool = 'Bash'",
            "policy.toml: claude.permission_rules[0].behavior: missing; expected a string",
        ),
        (
            "[[claude.permission_rules]]\nname = 'r'\ntool = 'Bash'\nbehavior = 'ask'",
            "policy.toml: claude.permission_rules[0].behavior: got 'ask'; expected \"allow\" or",
        ),
        (
            "[[claude.permission_rules]]\nname = 'r'\ntool = 'Bash'\nbehavior = 'deny'\n"
            "input_pattern = '('",
            "policy.toml: claude.permission_rules[0]: claude.permission_rules r: input_pattern:",
        ),
        (
            "[[claude.permission_rules]]\nname = 'r'\ntool = 'Bash'\nbehavior = 'deny'\nwhen = 1",
            "policy.toml: claude.permission_rules[0].when: unknown key; expected one of name",
        ),
        (
            "[limits]\nconcurrent_runs = 0",
            "policy.toml: limits.concurrent_runs: got 0 (an integer); expected a positive",
        ),
        (
            "[limits]\nmax_output_bytes = true",
            "policy.toml: limits.max_output_bytes: got True (a boolean); expected a positive",
        ),
        (
            "[limits.identity.bob]\nstarts_per_minute = '5'",
            "policy.toml: limits.identity.bob.starts_per_minute: got '5' (a string)",
        ),
        (
            "[limits.identity.bob]\nprocesses = 5",
            "policy.toml: limits.identity.bob.processes: unknown key; expected one of "
            "concurrent_runs, starts_per_minute, max_output_bytes",
        ),
        (
            "[resources]\nopen_files = -1",
            "policy.toml: resources.open_files: got -1 (an integer); expected a positive",
        ),
        (
            "[resources]\nmemory = 5",
            "policy.toml: resources.memory: unknown key; expected one of cpu_seconds",
        ),
    ],
)
def test_validation_errors_name_the_key_and_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        parse_policy(text, "policy.toml")
    assert str(info.value).startswith(message), str(info.value)


def test_unreadable_file_and_unknown_identity(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match=r"cannot read the policy file .*missing\.toml"):
        load_policy(str(tmp_path / "missing.toml"))
    path = tmp_path / "policy.toml"
    path.write_text("[limits.identity.bobb]\nconcurrent_runs = 1\n")
    config = with_policy_file(make_config(), str(path))
    config = attrs.evolve(config, tokens={"bob-token-0123456789": Identity("bob")})
    with pytest.raises(ConfigError, match=r"limits.identity.bobb: no token has this identity"):
        validate(config)


def test_ccx_serve_reports_a_bad_policy_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[limits]\nconcurrent_runs = 'many'\n")
    assert main(["serve", "--policy", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: limits.concurrent_runs: got 'many' (a string); expected a positive" in err


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        'allow_shell = true\nsandboxed = true\n[env]\npass = ["PATH", "FOO"]\n'
        '[claude]\nmcp_configs = ["/etc/a.json"]\n'
    )
    from_file = config_from_env({"CCX_POLICY": str(path)})
    assert from_file.allow_shell is True
    assert from_file.claude.sandboxed is True
    assert from_file.claude.mcp_configs == ("/etc/a.json",)
    assert from_file.pass_env == ("PATH", "FOO")
    assert from_file.policy_file == str(path)
    overridden = config_from_env(
        {
            "CCX_POLICY": "/nonexistent-is-not-read.toml",
            "CCX_ALLOW_SHELL": "0",
            "CCX_CLAUDE_SANDBOXED": "0",
            "CCX_CLAUDE_MCP_CONFIGS": "/etc/b.json,/etc/c.json",
            "CCX_PASS_ENV": "PATH",
        },
        policy_path=str(path),  # --policy wins over CCX_POLICY
    )
    assert overridden.allow_shell is False
    assert overridden.claude.sandboxed is False
    assert overridden.claude.mcp_configs == ("/etc/b.json", "/etc/c.json")
    assert overridden.pass_env == ("PATH",)
    assert overridden.policy.commands is None


def test_permission_rules_come_from_the_file_and_match_by_tool_and_input(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        "[[claude.permission_rules]]\nname = 'no-rm-root'\ntool = 'Bash'\n"
        "input_pattern = 'rm\\s+-rf\\s+/'\nbehavior = 'deny'\nmessage = 'no'\n"
        "[[claude.permission_rules]]\nname = 'reads'\ntool = 'Read'\nbehavior = 'allow'\n"
    )
    config = config_from_env({"CCX_POLICY": str(path), "CCX_CLAUDE_PERMISSION_TIMEOUT": "7"})
    rules = config.claude.permission_rules
    assert [rule.name for rule in rules] == ["no-rm-root", "reads"]
    assert config.claude.permission_timeout == 7.0
    assert config.claude.permission_default == "deny"
    deny, reads = rules
    assert deny.matches("Bash", "rm -rf / --no-preserve-root")
    assert not deny.matches("Bash", "rm -rf ./build")
    assert not deny.matches("Read", "rm -rf /")
    assert reads.matches("Read", '{"file_path": "/etc/hosts"}')


# -- the rules over the wire ------------------------------------------------------------------


def _policy_config(tmp_path: Path, text: str, **changes: Any) -> ServerConfig:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    config = with_policy_file(make_config(**changes), str(path))
    validate(config)
    return config


async def test_command_and_flag_rules_refuse_and_nothing_runs(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = _policy_config(
        tmp_path,
        """
        [commands.sh]
        flags.allow = ["-e", "-c", "-x"]
        flags.require = ["-e"]
        flags.forbid = ["-x"]
        [commands.touch]
        allowed = false
        [commands.echo]
        """,
    )
    served = await start_daemon(nursery, config)
    marker = tmp_path / "ran"
    touch = f"touch {marker}"
    refusals = [
        (["touch", str(marker)], "commands.touch.allowed", "command 'touch' is refused by"),
        (["mkdir", str(marker)], "unlisted_commands", "command 'mkdir' (/"),
        (["sh", "-e", "-x", "-c", touch], "commands.sh.flags.forbid", "flag -x is forbidden"),
        (["sh", "-e", "-u", "-c", touch], "commands.sh.flags.allow", "flag -u is not allowed"),
        (["sh", "-e", "--norc=1", "-c", touch], "commands.sh.flags.allow", "flag --norc"),
        (["sh", "-c", touch], "commands.sh.flags.require", "flag -e is required for sh"),
    ]
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            for argv, rule, message in refusals:
                exc = await client.call_error("execute", argv=argv)
                assert exc.code == -32001, argv
                assert exc.data["rule"] == rule
                assert exc.message.startswith(message), exc.message
                # data.rule names the rule; the message does not say it again (ccx adds it).
                assert rule not in exc.message
                assert "rule:" not in exc.message
            # The shell rule is still the shell rule.
            exc = await client.call_error("execute", command=touch, shell=True)
            assert exc.data["rule"] == "allow_shell"
            assert not marker.exists()
            # What the rules allow runs; a flag's value after "--" is not a flag.
            run = await client.execute(argv=["sh", "-e", "-c", "echo ok -x", "--", "-u"])
            record = await client.wait_completed(run)
            assert bytes(record.stdout) == b"ok -x\n"
            run = await client.execute(argv=["echo", "-n", "any flags"])
            assert bytes((await client.wait_completed(run)).stdout) == b"any flags"


async def test_cwd_roots(nursery: trio.Nursery, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (tmp_path / "rootlike").mkdir()  # a sibling whose name starts like the root
    config = _policy_config(
        tmp_path,
        f'unlisted_commands = "allow"\ncwd_roots = ["{root}"]\n'
        f'[commands.sh]\ncwd_roots = ["{outside}"]\n',
        allow_shell=True,
    )
    served = await start_daemon(nursery, config)
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            for cwd in (outside, root / "escape", tmp_path / "rootlike", root / ".." / "outside"):
                exc = await client.call_error("execute", argv=["touch", "ran"], cwd=str(cwd))
                assert exc.code == -32001
                assert exc.data["rule"] == "cwd_roots"
                assert "is outside the allowed roots" in exc.message
            # A command's own roots replace the top-level ones.
            exc = await client.call_error("execute", argv=["sh", "-c", "touch ran"], cwd=str(root))
            assert exc.data["rule"] == "commands.sh.cwd_roots"
            assert not (root / "ran").exists()
            assert not (outside / "ran").exists()
            run = await client.execute(argv=["pwd"], cwd=str(root / "sub"))
            record = await client.wait_completed(run)
            assert bytes(record.stdout) == f"{root / 'sub'}\n".encode()
            run = await client.execute(argv=["sh", "-c", "pwd"], cwd=str(outside))
            assert bytes((await client.wait_completed(run)).stdout) == f"{outside}\n".encode()


async def test_request_env_allow_list(nursery: trio.Nursery, tmp_path: Path) -> None:
    config = _policy_config(tmp_path, '[env]\nrequest_allow = ["APP_*", "LANG"]\n')
    served = await start_daemon(nursery, config)
    marker = tmp_path / "ran"
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            exc = await client.call_error(
                "execute", argv=["touch", str(marker)], env={"APP_X": "1", "OTHER": "x"}
            )
            assert exc.code == -32001
            assert exc.data == {
                "rule": "env.request_allow",
                "variable": "OTHER",
                "allowed": ["APP_*", "LANG"],
            }
            assert exc.message == "environment variable OTHER is not one a request may set"
            assert not marker.exists()
            run = await client.execute(
                argv=["sh", "-c", "echo $APP_X $LANG"], env={"APP_X": "a", "LANG": "C"}
            )
            assert bytes((await client.wait_completed(run)).stdout) == b"a C\n"


async def test_claude_method_follows_the_command_rules(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fake = tmp_path / "bin" / "claude"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {tmp_path / 'ran'}\n")
    fake.chmod(0o755)
    config = _policy_config(
        tmp_path,
        f'[commands."{fake}"]\ncwd_roots = ["{tmp_path / "repos"}"]\nflags.forbid = ["--model"]\n',
    )
    config = attrs.evolve(config, claude=ClaudeConfig(binary=str(fake)))
    served = await start_daemon(nursery, config)
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            exc = await client.call_error("claude", prompt="hi", model="sonnet")
            assert exc.data["rule"] == f"commands.{fake}.flags.forbid"
            exc = await client.call_error("claude", prompt="hi", cwd=str(tmp_path))
            assert exc.data["rule"] == f"commands.{fake}.cwd_roots"
    assert not (tmp_path / "ran").exists()


async def test_instance_names_durable_run_ids(nursery: trio.Nursery) -> None:
    assert config_from_env({"CCX_INSTANCE": "ccx-2"}).instance == "ccx-2"
    assert config_from_env({}).instance == os.uname().nodename
    with pytest.raises(ConfigError, match="instance 'a/b' must be at most 200 letters"):
        validate(make_config(instance="a/b"))
    validate(make_config(instance="i" * 200))
    with pytest.raises(ConfigError, match="binary output frames"):  # run ids fit 255 bytes
        validate(make_config(instance="i" * 201))
    served = await start_daemon(nursery, make_config(instance="ccx-0"))
    with trio.fail_after(10):
        async with open_client(served.url) as client:
            run = await client.execute(argv=["true"], durable=True)
            await client.wait_completed(run)
            assert (await client.call("status"))["instance"] == "ccx-0"
    assert run.startswith("ccx-0-")
    assert len(run.rsplit("-", 1)[1]) == 12


async def test_ccx_serve_with_a_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[commands.echo]\nflags.forbid = ["-e"]\n')
    async with run_daemon("--policy", str(path), "--instance", "pod-7") as daemon:
        with trio.fail_after(20):
            async with open_client(daemon.url) as client:
                exc = await client.call_error("execute", argv=["echo", "-e", "x"])
                assert exc.data["rule"] == "commands.echo.flags.forbid"
                exc = await client.call_error("execute", argv=["true"])
                assert exc.data["rule"] == "unlisted_commands"
                run = await client.execute(argv=["echo", "ok"], durable=True)
                assert run.startswith("pod-7-")
                assert bytes((await client.wait_completed(run)).stdout) == b"ok\n"
