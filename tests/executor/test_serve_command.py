"""``ccx serve`` as an operator meets it: flags, environment, errors, and its JSON logs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import trio
from ccx_testing import open_client, run_daemon, wait_until

from cc_executor.executor.cli import build_parser, serve_config
from cc_executor.executor.config.server import ConfigError, config_from_env, validate

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
        # Taken, then a traceback at the first drain (trio refuses a negative or NaN timeout).
        (["--shutdown-grace", "-5"], {}, "shutdown_grace (--shutdown-grace) must be a number"),
        ([], {"CCX_SHUTDOWN_GRACE": "nan"}, "shutdown_grace (--shutdown-grace) must be a"),
        (["--term-grace", "nan"], {}, "term_grace (--term-grace) must be a number of seconds"),
        (["--retention-seconds", "nan"], {}, "retention_seconds (--retention-seconds) must"),
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
    for flag in ("--host", "--port", "--allow", "--allow-shell", "--term-grace", "--stream-buffer"):
        assert flag in help_text.stdout.decode()


def test_environment_settings() -> None:
    config = config_from_env({"CCX_PORT": "9000", "CCX_ALLOW": "echo,ls", "CCX_TERM_GRACE": "2.5"})
    assert config.port == 9000
    assert config.allowed_commands == ("echo", "ls")
    assert config.supervision.term_grace == 2.5
    with pytest.raises(ConfigError, match="CCX_TERM_GRACE"):
        config_from_env({"CCX_TERM_GRACE": "soon"})
    assert config_from_env({"CCX_BINARY_STREAM_BUFFER": "131072"}).binary_stream_buffer == 131072
    with pytest.raises(ConfigError, match="binary_stream_buffer"):
        validate(config_from_env({"CCX_BINARY_STREAM_BUFFER": "0"}))


def test_the_stream_buffer_sets_the_read_size() -> None:
    """`--stream-buffer` / CCX_STREAM_BUFFER is supervision's read_size, which bounds what a
    stalled stream holds (tests/supervision/test_stream_buffer.py)."""
    assert config_from_env({}).supervision.read_size == 128 * 1024
    assert config_from_env({"CCX_STREAM_BUFFER": "131072"}).supervision.read_size == 131072
    flag = serve_config(build_parser().parse_args(["serve", "--stream-buffer", "8192"]))
    assert flag.supervision.read_size == 8192
    with pytest.raises(ConfigError, match="stream buffer"):
        serve_config(build_parser().parse_args(["serve", "--stream-buffer", "0"]))


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


def serve_fails(
    *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> tuple[int, str]:
    """Run ``ccx serve`` as a real process that must fail to start: (exit status, stderr)."""
    result = subprocess.run(
        [*prefix, *SERVE, *args],
        env={"PATH": "/usr/bin:/bin", "CCX_STATE_DIR": "/tmp/ccx-never-used", **(env or {})},
        capture_output=True,
        timeout=60,
    )
    return result.returncode, result.stderr.decode()


def test_a_port_in_use_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, stderr = serve_fails("--port", str(port))
    assert status == 1
    # It said what failed, not what to do: the next step is in the same line now.
    assert stderr == (
        f"ccx: cannot listen on 127.0.0.1:{port}: address already in use — another program "
        f"listens there (ccx --url ws://127.0.0.1:{port}/ status says whether it is a daemon "
        "already); stop it, or choose another port with --port (CCX_PORT)\n"
    )


def test_a_host_that_is_not_ours_is_one_line_and_exit_3() -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine, and binding to it
    # sends nothing anywhere.
    status, stderr = serve_fails("--host", "192.0.2.1", "--port", "0", "--insecure-listen")
    assert status == 3
    assert stderr == (
        "ccx: cannot listen on 192.0.2.1:0: cannot assign requested address — --host "
        "(CCX_HOST) must be an address of this machine, or a name for one\n"
    )


def test_a_privileged_port_is_one_line_and_exit_4() -> None:
    # As root the port would be ours: run without CAP_NET_BIND_SERVICE, as an unprivileged
    # daemon does (util-linux setpriv drops it from the bounding set before exec).
    prefix = ("setpriv", "--bounding-set", "-net_bind_service", "--") if os.geteuid() == 0 else ()
    status, stderr = serve_fails("--port", "1", prefix=prefix)
    assert status == 4
    assert stderr == (
        "ccx: cannot listen on 127.0.0.1:1: permission denied — a port below 1024 needs "
        "privileges: choose --port 1024 or above (CCX_PORT)\n"
    )


def test_unreadable_files_are_one_line_and_exit_5(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    status, stderr = serve_fails("--token-file", str(missing))
    assert status == 5
    assert stderr == f"ccx: cannot read the token file {missing}: no such file or directory\n"
    status, stderr = serve_fails(env={"CCX_TOKEN_FILE": str(tmp_path)})
    assert status == 5
    assert stderr == f"ccx: cannot read the token file {tmp_path}: is a directory\n"
    status, stderr = serve_fails("--policy", str(missing))
    assert status == 5
    assert stderr == f"ccx: cannot read the policy file {missing}: no such file or directory\n"
    fifo = tmp_path / "fifo"  # opening it would wait for a writer: refused at once instead
    os.mkfifo(fifo)
    status, stderr = serve_fails("--policy", str(fifo))
    assert status == 5
    assert stderr == f"ccx: cannot read the policy file {fifo}: not a regular file (a FIFO)\n"


def test_help_documents_the_exit_statuses() -> None:
    help_text = subprocess.run([*SERVE, "--help"], capture_output=True, timeout=60).stdout.decode()
    for line in ("1  cannot listen: the address is already in use", "5  a file named by"):
        assert line in help_text


async def test_the_first_line_says_where_it_listens_in_plain_strings() -> None:
    with trio.fail_after(60):
        async with run_daemon() as daemon:
            listening = orjson.loads(daemon.stderr_lines[0])
    assert listening["event"] == "daemon.listening"
    base = f"ws://127.0.0.1:{daemon.port}"
    assert listening["urls"] == [f"{base}/", f"{base}/ws/mcp"]
    assert listening["message"] == f"listening on {base}/ (and {base}/ws/mcp)"
    for value in listening.values():
        # Plain JSON values only: no Python repr of an object or enum in any field.
        assert not (isinstance(value, str) and value.startswith("<")), value
