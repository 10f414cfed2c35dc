"""``ccx serve`` as an operator meets it: flags, environment, errors, and its JSON logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import trio
from ccx_testing import open_client, run_daemon, wait_until

from cc_executor.executor.cli import build_parser, serve_config
from cc_executor.executor.config.server import ConfigError, config_from_env

SERVE = [sys.executable, "-m", "cc_executor.executor", "serve"]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "70000"], {}, "port must be 0..65535"),
        ([], {"CCX_PORT": "abc"}, "CCX_PORT='abc' is not an integer"),
        ([], {"CCX_ALLOW_SHELL": "maybe"}, "CCX_ALLOW_SHELL='maybe' is not a boolean"),
        (["--max-connections", "0"], {}, "max_connections must be positive"),
        (["--host", "0.0.0.0"], {}, "refusing to listen on 0.0.0.0 without authentication"),
        ([], {"CCX_TOKENS": "alice:short"}, "the token of alice is shorter than 16"),
        (["--token-file", "/nonexistent/tokens"], {}, "cannot read the token file"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [*SERVE, *args], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, timeout=60
    )
    assert result.returncode == 2
    assert message in result.stderr.decode()


def test_version_and_help() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "cc_executor.executor", "--version"],
        capture_output=True,
        timeout=60,
    )
    assert version.stdout.decode().startswith("cc-executor ")
    help_text = subprocess.run([*SERVE, "--help"], capture_output=True, timeout=60)
    for flag in ("--host", "--port", "--allow", "--allow-shell", "--term-grace"):
        assert flag in help_text.stdout.decode()


def test_environment_settings() -> None:
    config = config_from_env({"CCX_PORT": "9000", "CCX_ALLOW": "echo,ls", "CCX_TERM_GRACE": "2.5"})
    assert config.port == 9000
    assert config.allowed_commands == ("echo", "ls")
    assert config.supervision.term_grace == 2.5
    with pytest.raises(ConfigError, match="CCX_TERM_GRACE"):
        config_from_env({"CCX_TERM_GRACE": "soon"})


async def test_json_logs_name_session_and_run_with_one_summary_line_each() -> None:
    with trio.fail_after(60):
        async with run_daemon(env={"CCX_ALLOW": "echo"}) as daemon:
            async with open_client(daemon.url) as client:
                run = await client.execute(argv=["echo", "secret-output"])
                await client.wait_completed(run)
                refused = await client.call_error("execute", argv=["ls"])
                assert refused.code == -32001
            await wait_until(lambda: any('"session.close"' in ln for ln in daemon.stderr_lines))
            lines = [orjson.loads(line) for line in daemon.stderr_lines if line]
    for line in lines:
        assert {"event", "level", "timestamp"} <= line.keys()
    run_ends = [line for line in lines if line["event"] == "run.end"]
    assert len(run_ends) == 1
    assert run_ends[0]["run"] == run
    assert run_ends[0]["outcome"] == "exited"
    assert run_ends[0]["stdout_bytes"] == len("secret-output\n")
    session_closes = [line for line in lines if line["event"] == "session.close"]
    assert len(session_closes) == 1
    assert session_closes[0]["session"] == run_ends[0]["session"]
    assert session_closes[0]["runs"] == 1
    assert session_closes[0]["errors"] == 1
    # Output is never logged.
    assert not any("secret-output" in orjson.dumps(line).decode() for line in lines)


def test_token_file_and_listening_beyond_loopback(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(
        "# name token [admin]\nalice alice-token-0123456789\nops ops-token-0123456789 admin\n"
    )
    config = serve_config(
        build_parser().parse_args(["serve", "--host", "0.0.0.0", "--token-file", str(tokens)])
    )
    assert config.tokens is not None
    assert {i.name: i.admin for i in config.tokens.values()} == {"alice": False, "ops": True}
    forced = serve_config(
        build_parser().parse_args(["serve", "--host", "0.0.0.0", "--insecure-listen"])
    )
    assert forced.tokens is None
    tokens.write_text("alice\n")
    with pytest.raises(ConfigError, match=r"tokens:1: expected 'NAME TOKEN \[admin\]'"):
        serve_config(build_parser().parse_args(["serve", "--token-file", str(tokens)]))
