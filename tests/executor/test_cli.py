"""`ccx` as a user meets it through pipes: exit codes, byte-exact output, stdin, errors, Ctrl-C.

Each test runs `python -m cc_executor.executor ...` as a subprocess against a daemon on a
loopback port; stdout and stderr are pipes, so there is never a status line.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import trio
from ccx_testing import (
    Served,
    alive,
    make_config,
    run_daemon,
    start_daemon,
    unused_url,
    wait_until,
)

from cc_executor.executor.client import open_connection

TIMEOUT = 60
CCX = [sys.executable, "-m", "cc_executor.executor"]


async def ccx(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(TIMEOUT):
        return await trio.run_process(
            [*CCX, *args], stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
        )


async def test_run_exit_code_and_separate_streams(served: Served) -> None:
    done = await ccx("run", "--url", served.url, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, b"out\n", b"err\n")


async def test_run_signalled_child_exits_128_plus_n(served: Served) -> None:
    done = await ccx("run", "--url", served.url, "--", "sh", "-c", "kill -TERM $$")
    assert done.returncode == 128 + signal.SIGTERM
    assert done.stdout == done.stderr == b""


async def test_run_output_is_byte_exact_through_a_pipe(served: Served, tmp_path: Path) -> None:
    copy = tmp_path / "local.bin"
    remote = f"head -c 5000000 /dev/urandom | tee {copy}"
    line = shlex.join([*CCX, "run", "--url", served.url, "--", "sh", "-c", remote])
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            ["sh", "-c", f"{line} | sha256sum"], capture_stdout=True, check=True
        )
    assert done.stdout.split()[0].decode() == hashlib.sha256(copy.read_bytes()).hexdigest()


async def test_run_feeds_stdin_when_it_is_not_a_terminal(served: Served) -> None:
    payload = os.urandom(300_000) + b"tail\n"
    done = await ccx("run", "--url", served.url, "--", "cat", stdin=payload)
    assert done.returncode == 0
    assert done.stdout == payload


async def test_run_options_cwd_and_env(served: Served, tmp_path: Path) -> None:
    done = await ccx(
        "run", "--url", served.url, "--cwd", str(tmp_path), "--env", "A=1", "--",
        "sh", "-c", "pwd; echo $A",
    )  # fmt: skip
    assert done.stdout == f"{tmp_path}\n1\n".encode()


async def test_run_json_events(served: Served) -> None:
    done = await ccx("run", "--json", "--url", served.url, "--", "printf", "a\\377")
    events = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [e["event"] for e in events] == ["output", "completed"]
    assert events[0]["encoding"] == "base64"
    assert events[1]["exit_code"] == 0


async def test_ctrl_c_interrupts_the_run_as_a_local_ctrl_c(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            [*CCX, "run", "--url", served.url, "--", "sh", "-c", "echo started; sleep 30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        seen = b""
        while b"started" not in seen:
            chunk = await process.stdout.receive_some(1024)
            assert chunk, "ccx ended before the child said it started"
            seen += chunk
        process.send_signal(signal.SIGINT)
        stderr = b""
        async for chunk in process.stderr:
            stderr += chunk
        # The shell and its sleep died of the SIGINT, as in a terminal: 128 + 2.
        assert await process.wait() == 130
    assert stderr.decode().startswith("ccx: interrupting run ")
    assert stderr.count(b"\n") == 1  # an interrupted run needs no other explanation


async def test_daemon_not_running_says_how_to_start_one() -> None:
    url = unused_url()
    done = await ccx("run", "--url", url, "--", "true")
    assert done.returncode == 69
    message = done.stderr.decode()
    assert message.count("\n") == 1
    assert message.startswith(f"ccx: no cc-executor daemon at {url}")
    assert message.rstrip().endswith(f"start one with: ccx serve --port {url.split(':')[2][:-1]}")
    done = await ccx("status", "--url", url)
    assert done.returncode == 69
    assert "start one with: ccx serve" in done.stderr.decode()


async def test_unknown_run(served: Served) -> None:
    for command in (["pause", "nosuch"], ["signal", "nosuch", "USR1"], ["cancel", "nosuch"]):
        done = await ccx(*command, "--url", served.url)
        assert done.returncode == 1
        assert done.stderr.decode() == (
            f"ccx: no run nosuch for you at {served.url} — "
            f"ccx --url {served.url} ps lists your runs\n"
        )


async def test_refused_by_the_allow_list_names_the_rule() -> None:
    async with run_daemon("--allow", "echo") as daemon:
        done = await ccx("run", "--url", daemon.url, "--", "cat")
        assert done.returncode == 125
        message = done.stderr.decode()
        assert message.startswith("ccx: refused by the daemon's policy: ")
        assert message.count("allowed_commands") == 1  # the rule, named once
        done = await ccx("run", "--url", daemon.url, "--", "no-such-program-ccx")
        assert done.returncode == 125  # refused first: it is not on the allow-list either
        assert done.stderr.decode() == (
            "ccx: refused by the daemon's policy: command 'no-such-program-ccx' is not found, "
            "and not on the allow-list (rule: allowed_commands)\n"
        )
    # Listed, but no such program: it said "is not on the allow-list", which it is.
    async with run_daemon("--allow", "echo", "--allow", "no-such-program-ccx") as daemon:
        done = await ccx("run", "--url", daemon.url, "--", "no-such-program-ccx")
        assert done.returncode == 125
        assert done.stderr.decode() == (
            "ccx: refused by the daemon's policy: command 'no-such-program-ccx' is on the "
            "allow-list, but no such program is found (rule: allowed_commands)\n"
        )


async def test_spawn_failure_exits_127(served: Served) -> None:
    done = await ccx("run", "--url", served.url, "--", "no-such-program-ccx")
    assert done.returncode == 127
    assert done.stderr.decode().startswith("ccx: could not start the command: ")


async def test_status_and_ps(served: Served) -> None:
    done = await ccx("status", "--url", served.url)
    assert done.returncode == 0
    assert done.stdout.startswith(b"cc-executor ")
    assert b"capabilities: " in done.stdout
    done = await ccx("status", "--json", "--url", served.url)
    assert orjson.loads(done.stdout)["server"] == "cc-executor"
    done = await ccx("ps", "--url", served.url)
    assert done.returncode == 0
    assert done.stdout.split(b"\n", 1)[0].split() == [
        b"RUN", b"STATE", b"AGE", b"BYTES", b"SEQ", b"COMMAND"
    ]  # fmt: skip


async def test_ps_shows_a_command_with_controls_as_one_line_that_reads_back(
    served: Served,
) -> None:
    # A newline would break the table's rows; ESC and a bidirectional override would drive or
    # mislead the reader's terminal. Whoever started the run chose its argv.
    argv = ["printf", "%s", "a\nb\x1b[31mred\u202ex\\y's", "plain word"]
    done = await ccx("run", "--url", served.url, "--", *argv)
    assert done.returncode == 0
    ps = await ccx("ps", "--url", served.url)
    assert ps.returncode == 0
    assert b"\x1b" not in ps.stdout
    assert "\u202e".encode() not in ps.stdout
    (row,) = ps.stdout.decode().splitlines()[1:]
    shown = row.split("  ")[-1]
    with trio.fail_after(TIMEOUT):
        words = await trio.run_process(
            ["bash", "-c", f"printf '%s\\0' {shown}"], capture_stdout=True, check=True
        )
    assert words.stdout.decode().split("\0")[:-1] == argv


@pytest.mark.parametrize("words", [("ps",), ("ps", "--json"), ("status",)])
async def test_a_reader_gone_from_stdout_ends_quietly_with_sigpipe_status(
    served: Served, words: tuple[str, ...]
) -> None:
    """`ccx ps | head -0`: whoever reads stdout has closed it before ccx writes; ccx ends as a
    Unix tool killed by SIGPIPE would (status 141), with no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with trio.fail_after(TIMEOUT):
            done = await trio.run_process(
                [*CCX, *words, "--url", served.url],
                stdout=write_end,
                capture_stderr=True,
                check=False,
            )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (128 + signal.SIGPIPE, b"")


# ccx run and ps under a hook that lists, on stderr, every module loaded by the time it exits,
# which it does by os._exit, skipping the interpreter's teardown (and so any atexit hook).
LOADED_AT_EXIT = (
    "import os, runpy, sys;"
    "exit_now = os._exit;"
    "os._exit = lambda status: (print(*sorted(sys.modules), file=sys.stderr, flush=True),"
    " exit_now(status));"
    "sys.argv[0] = 'ccx'; runpy.run_module('cc_executor.executor', run_name='__main__')"
)
# What a command that sends a request and decodes its reply has no use for: the server's
# decoder, the method table and every params class behind it, cattrs, structlog; the daemon's
# half of the server codec and the result class of every other method; a Claude session's
# notice classes; what only a failure prints (W6's cost).
NOT_FOR_A_CLIENT = {
    "cattrs",
    "structlog",
    "http",
    "cc_executor.protocol.codec",
    "cc_executor.protocol.converter",
    "cc_executor.protocol.events",
    "cc_executor.protocol.methods",
    "cc_executor.protocol.results",
    "cc_executor.protocol.server_codec",
    "cc_executor.protocol.claude.notices",
    "cc_executor.protocol.claude.params",
    "cc_executor.executor.client.failures",
}


@pytest.mark.parametrize(
    ("words", "also_unused"),
    [(["run", "--", "true"], set()), (["ps"], {"cc_executor.protocol.params"})],
)
async def test_run_and_ps_load_only_what_they_use(
    served: Served, words: list[str], also_unused: set[str]
) -> None:
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [sys.executable, "-c", LOADED_AT_EXIT, "--url", served.url, *words],
            stdin=subprocess.DEVNULL,  # as W6 runs them (a stdin to forward needs its params)
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stderr.decode().split())
    assert "cc_executor.protocol.server_decoding" in loaded  # it left by os._exit
    assert loaded & (NOT_FOR_A_CLIENT | also_unused) == set()


async def test_usage_errors(served: Served) -> None:
    done = await ccx("run", "--url", served.url, "--env", "NOEQUALS", "--", "true")
    assert done.returncode == 2
    assert b"--env wants NAME=VALUE" in done.stderr
    done = await ccx("run", "--url", served.url)
    assert b"nothing to run" in done.stderr


async def test_usage_errors_name_the_option_not_the_protocols_path(served: Served) -> None:
    # They said "must be a positive number of seconds @ $.params.timeout", and a signal
    # number no signal has was "99 is not a valid Signals" (Python's enum).
    url = ("--url", served.url)
    cases = [
        (("run", *url, "--timeout", "-1", "--", "true"), 2, "ccx run: --timeout: must be a"),
        (("run", *url, "--idle-timeout", "0", "--", "true"), 2, "ccx run: --idle-timeout: "),
        (("claude", *url, "--resume", "nope"), 2, "ccx claude: --resume: must be a Claude"),
        (("signal", *url, "r-1", "99"), 2, "ccx signal: unknown signal '99'"),
        (
            ("signal", *url, "r-1", "stop"),
            2,
            "ccx signal: SIGSTOP is not sent as a signal: ccx pause r-1",
        ),
        (
            ("signal", *url, "r-1", "CONT"),
            2,
            "ccx signal: SIGCONT is not sent as a signal: ccx pause r-1",
        ),
        (("claude", "send", *url, "r-1", ""), 1, "ccx: must not be empty (error -32602)"),
    ]
    for words, status, start in cases:
        done = await ccx(*words)
        line = done.stderr.decode()
        assert done.returncode == status, line
        assert line.startswith(start), line
        assert line.count("\n") == 1, line
        assert "$.params" not in line, line
        assert "Signals" not in line, line


async def test_a_negative_from_is_a_usage_error_naming_the_flag(served: Served) -> None:
    # It went to the daemon, whose refusal came back as "ccx: --from-seq: must be a sequence
    # number >= 0 (error -32602)", exit 1: a flag ccx has not, the status of a failed request.
    done = await ccx("attach", "--url", served.url, "r-1", "--from", "-1")
    assert done.returncode == 2
    assert done.stderr.decode().endswith(
        "ccx attach: error: argument --from: not a sequence number (0 or more): '-1'\n"
    )


# -- durable runs across invocations (once the daemon offers them) ---------------------------


async def require_durable(url: str) -> None:
    async with open_connection(url) as conn:
        if not conn.supports_durable:
            pytest.skip("the daemon does not announce the 'durable' and 'attach' capabilities")


async def test_detach_then_ps_attach_logs_pause_resume_cancel(served: Served) -> None:
    await require_durable(served.url)
    url = ["--url", served.url]
    script = "echo one; sleep 0.2; echo two; exec sleep 30"
    done = await ccx("run", *url, "--detach", "--", "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    run = done.stdout.decode().strip()
    with trio.fail_after(TIMEOUT):
        while True:  # bounded by fail_after: wait for the second line to be journaled
            ps = await ccx("ps", "--json", *url)
            rows = {row["run"]: row for row in orjson.loads(ps.stdout)}
            if rows[run]["stdout_bytes"] >= 8:
                break
            await trio.sleep(0.05)
    assert (await ccx("ps", *url)).stdout.count(run.encode()) == 1
    logs = await ccx("logs", *url, run)
    assert (logs.returncode, logs.stdout) == (0, b"one\ntwo\n")
    assert (await ccx("pause", *url, run)).returncode == 0
    assert (await ccx("resume", *url, run)).returncode == 0
    assert (await ccx("signal", *url, run, "USR2")).returncode == 0  # sleep dies of USR2
    attached = await ccx("attach", *url, run, "--from", "1")
    assert attached.stdout == b"two\n"
    assert attached.returncode == 128 + signal.SIGUSR2
    cancel = await ccx("cancel", *url, run)
    assert cancel.returncode == 1  # already over
    rows = {row["run"]: row for row in orjson.loads((await ccx("ps", "--json", *url)).stdout)}
    last = rows[run]["last_seq"]
    # from the completion's seq nothing follows: the exit status, no output, no traceback
    at_end = await ccx("attach", *url, run, "--from", str(last))
    assert (at_end.returncode, at_end.stdout, at_end.stderr) == (128 + signal.SIGUSR2, b"", b"")


async def test_attach_whose_reader_goes_away_leaves_the_run_running(served: Served) -> None:
    """`ccx attach RUN | head`: ccx ends quietly with the SIGPIPE status, as `ccx run ... |
    head` does, but the run goes on, as after Ctrl-C on attach. It was cancelled: a viewer
    that stopped reading ended the durable run it was only watching."""
    await require_durable(served.url)
    url = ["--url", served.url]
    done = await ccx("run", *url, "--detach", "--", "sh", "-c", "echo up; exec sleep 30")
    run = done.stdout.decode().strip()
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with trio.fail_after(TIMEOUT):
            attached = await trio.run_process(
                [*CCX, "attach", *url, run], stdout=write_end, capture_stderr=True, check=False
            )
    finally:
        os.close(write_end)
    assert (attached.returncode, attached.stderr) == (128 + signal.SIGPIPE, b"")
    rows = {row["run"]: row for row in orjson.loads((await ccx("ps", "--json", *url)).stdout)}
    assert rows[run]["state"] == "running"
    assert (await ccx("cancel", *url, run)).returncode == 0


@pytest.mark.parametrize("command", ["run", "attach"])
async def test_a_daemon_stopped_under_a_run_is_said_not_to_answer(command: str) -> None:
    """The daemon SIGSTOPped while ccx follows a silent run: ccx waited without a word, as
    for a run that writes nothing. Now it says, within seconds, that the daemon does not
    answer (its pings go unanswered), and again when it answers after SIGCONT; the run is
    followed on all along."""
    async with run_daemon() as daemon:
        url = ["--url", daemon.url]
        words = ["sh", "-c", "echo up; exec sleep 60"]
        if command == "run":
            argv = [*CCX, "run", *url, "--", *words]
        else:
            done = await ccx("run", *url, "--detach", "--", *words)
            argv = [*CCX, "attach", *url, done.stdout.decode().strip()]
        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            with trio.fail_after(TIMEOUT):
                assert process.stdout is not None
                assert process.stderr is not None
                assert await process.stdout.receive_some(3) == b"up\n"
                daemon.process.send_signal(signal.SIGSTOP)
                err = b""
                while b"has not answered" not in err:
                    chunk = await process.stderr.receive_some()
                    assert chunk, err
                    err += chunk
                daemon.process.send_signal(signal.SIGCONT)
                while b"answers again" not in err:
                    chunk = await process.stderr.receive_some()
                    assert chunk, err
                    err += chunk
                assert process.returncode is None  # still following the run
        finally:
            daemon.process.send_signal(signal.SIGCONT)
            process.kill()
            with trio.move_on_after(TIMEOUT):
                await process.wait()
    lines = err.decode().splitlines()
    assert lines == [
        f"ccx: the daemon at {daemon.url} has not answered for 4 s — it may be stopped "
        f"(kill -CONT resumes it) or too busy; ccx waits for run {lines[0].split()[-1]}",
        f"ccx: the daemon at {daemon.url} answers again",
    ], lines


async def test_a_daemon_stopped_under_a_long_cancel_is_said_not_to_answer(tmp_path: Path) -> None:
    """`ccx cancel` of a run that ignores SIGTERM waits out the daemon's term grace; the
    daemon SIGSTOPped meanwhile, ccx waited without a word. Now it says the daemon does not
    answer, then that it does, and prints the cancel's result as ever."""
    trapped = tmp_path / "trapped"
    script = f"trap 'echo $$ > {trapped}' TERM; echo up; while :; do sleep 0.1; done"
    async with run_daemon("--term-grace", "60") as daemon:
        url = ["--url", daemon.url]
        run = (await ccx("run", *url, "--detach", "--", "sh", "-c", script)).stdout.decode()
        run = run.strip()
        process = await trio.lowlevel.open_process(
            [*CCX, "cancel", *url, run], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            with trio.fail_after(TIMEOUT):
                assert process.stdout is not None
                assert process.stderr is not None
                await wait_until(trapped.exists, bound=TIMEOUT)  # the ladder waits its grace
                daemon.process.send_signal(signal.SIGSTOP)
                err = b""
                while b"has not answered" not in err:
                    chunk = await process.stderr.receive_some()
                    assert chunk, err
                    err += chunk
                daemon.process.send_signal(signal.SIGCONT)
                while b"answers again" not in err:
                    chunk = await process.stderr.receive_some()
                    assert chunk, err
                    err += chunk
                os.kill(int(trapped.read_text()), signal.SIGKILL)  # the grace need not run out
                out = b""
                async for chunk in process.stdout:
                    out += chunk
                async for chunk in process.stderr:
                    err += chunk
                assert await process.wait() == 0
        finally:
            daemon.process.send_signal(signal.SIGCONT)
            process.kill()
    assert out.decode().startswith(f"run {run} cancelled"), out
    assert err.decode().splitlines() == [
        f"ccx: the daemon at {daemon.url} has not answered for 4 s — it may be stopped "
        "(kill -CONT resumes it) or too busy; ccx waits for its reply",
        f"ccx: the daemon at {daemon.url} answers again",
    ]


async def test_ctrl_c_on_attach_leaves_a_stopped_daemon() -> None:
    """Ctrl-C on `ccx attach` stops following, as documented, even when the daemon does not
    answer (SIGSTOP): ccx waited forever for the reply to its detach."""
    async with run_daemon() as daemon:
        url = ["--url", daemon.url]
        done = await ccx("run", *url, "--detach", "--", "sh", "-c", "echo up; exec sleep 60")
        run = done.stdout.decode().strip()
        process = await trio.lowlevel.open_process(
            [*CCX, "attach", *url, run], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            with trio.fail_after(TIMEOUT):
                assert process.stdout is not None
                assert await process.stdout.receive_some(3) == b"up\n"
                daemon.process.send_signal(signal.SIGSTOP)
                process.send_signal(signal.SIGINT)
                assert await process.wait() == 130
        finally:
            daemon.process.send_signal(signal.SIGCONT)
            process.kill()
        assert (await ccx("cancel", *url, run)).returncode == 0  # it went on


async def test_a_durable_run_on_an_unusable_state_directory_blames_the_directory(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A file where the state directory should be: the daemon serves, but refuses durable
    runs. ccx said "could not start the command: cannot create the run's journal: Not a
    directory" and exited 127, the status of a command not found; the command was never
    tried. Now the line names the state directory and what to do, with 125 (ccx run failed
    after connecting)."""
    state = tmp_path / "state"
    state.write_text("not a directory")
    served = await start_daemon(nursery, make_config(state_dir=str(state)))
    for flag in ("--durable", "--detach"):
        done = await ccx("run", "--url", served.url, flag, "--", "true")
        line = done.stderr.decode()
        assert (done.returncode, done.stdout) == (125, b""), line
        assert line == (
            "ccx: the daemon cannot keep a durable run (cannot create the run's journal: Not "
            "a directory) — its state directory (ccx serve --state-dir) is not usable: fix "
            "it, or run without --durable and --detach\n"
        )
    assert (await ccx("run", "--url", served.url, "--", "true")).returncode == 0


async def test_attach_of_a_run_that_is_not_durable_or_not_a_session_says_so(
    served: Served,
) -> None:
    # ccx attach/logs of another connection's live run that is not durable said "no run ID
    # for you — ccx ps lists your runs" (ps lists it); ccx claude attach of a durable run that
    # is not a session "joined Claude session", and ccx claude status of it printed a session
    # line of Nones.
    await require_durable(served.url)
    url = ["--url", served.url]
    durable = (await ccx("run", *url, "--detach", "--", "sleep", "30")).stdout.decode().strip()
    async with open_connection(served.url) as conn:
        live = await conn.execute(["sleep", "30"])  # this connection's, not durable
        for command in ("attach", "logs"):
            done = await ccx(command, live.id, *url)
            line = done.stderr.decode()
            assert done.returncode == 1, line
            assert line.startswith(f"ccx: run {live.id} is not durable: only a durable run"), line
        for command in ("attach", "status"):
            done = await ccx("claude", command, durable, *url)
            line = done.stderr.decode()
            assert done.returncode == 1, line
            assert line == f"ccx: run {durable} is not a Claude session run (error -32602)\n"
            assert done.stdout == b""
        missing = await ccx("attach", *url, "no-such-run")
        assert missing.returncode == 1
        assert b"no run no-such-run for you" in missing.stderr
        await live.cancel()
    assert (await ccx("cancel", *url, durable)).returncode == 0


async def test_run_shell_on_a_daemon_without_a_shell_is_one_line_saying_what_to_do(
    served: Served,
) -> None:
    # It was the policy's words ("send argv, or a command without shell: true") and a second
    # line suggesting --shell, the very option that was refused.
    done = await ccx("run", "--url", served.url, "--shell", "--", "echo hi | wc -c")
    line = done.stderr.decode()
    assert done.returncode == 125, line
    assert line.count("\n") == 1, line
    assert "looks like a shell command line" not in line
    assert line.rstrip("\n").endswith(
        "— run it as ccx run -- sh -c LINE, or start the daemon with --allow-shell"
    ), line


async def test_attach_and_logs_of_a_journal_that_cannot_be_read_say_so_plainly(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """With a FIFO in the journal's place the daemon cannot read it for the follow. ccx said
    "could not record the run ...; the run waits for the disk" (a write's words: nothing
    waits) and then "lost the connection ..." (it was not lost); now one line says what
    happened, that the run is not affected and how to try again, and ccx exits 1."""
    served = await start_daemon(nursery, make_config(state_dir=str(tmp_path)))
    url = ["--url", served.url]
    await require_durable(served.url)
    with trio.fail_after(TIMEOUT):
        async with open_connection(served.url) as conn:
            started = await conn.execute(["seq", "1", "10"], durable=True)
            await started.wait()
    run = started.id
    journal = tmp_path / "journals" / f"{run}.journal"
    journal.unlink()
    os.mkfifo(journal)
    for command in (["attach", run], ["logs", run]):
        done = await ccx(*command, *url)
        assert (done.returncode, done.stdout) == (1, b""), done.stderr
        line = done.stderr.decode()
        assert line.count("\n") == 1, line
        assert line.startswith(f"ccx: the daemon cannot read the journal of run {run} ("), line
        assert "not a regular file" in line
        assert "; the run itself is not affected — ccx " in line
        assert line.endswith(f" {run} --from 0 tries again\n"), line


async def test_attach_whose_daemon_dies_for_good_does_not_say_the_run_goes_on(
    tmp_path: Path,
) -> None:
    """The daemon SIGKILLed under `ccx attach` of a durable run and not back within the
    reconnect attempts: ccx said "it goes on: ccx attach RUN" (the run died with its daemon:
    the next start reports it lost). Now it says reconnecting failed, why, and how to find out
    what became of the run."""
    async with run_daemon("--state-dir", str(tmp_path)) as daemon:
        url = ["--url", daemon.url]
        await require_durable(daemon.url)
        done = await ccx("run", *url, "--detach", "--", "sh", "-c", "echo up; exec sleep 60")
        run = done.stdout.decode().strip()
        process = await trio.lowlevel.open_process(
            [*CCX, "attach", *url, run], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            with trio.fail_after(TIMEOUT):
                assert process.stdout is not None
                assert process.stderr is not None
                assert await process.stdout.receive_some(4) == b"up\n"  # following it live
                daemon.process.kill()
                await daemon.process.wait()
                err = b""
                while chunk := await process.stderr.receive_some():
                    err += chunk
                assert await process.wait() == 125
        finally:
            process.kill()
    line = err.decode()
    assert line.count("\n") == 1, line
    assert line.startswith(f"ccx: lost the connection to {daemon.url} under run {run}, and "), line
    assert "reconnecting failed (connection refused)" in line
    assert "it goes on" not in line
    assert line.endswith("says what became of it once the daemon answers again\n"), line


async def test_run_whose_daemon_dies_does_not_say_the_daemon_ends_it(tmp_path: Path) -> None:
    """The daemon SIGKILLed under `ccx run` of a run that is not durable: ccx said "the
    daemon ends it", and the run's processes lived on (nothing was left to end them). Now
    ccx finds that nothing answers and says what will end them: the next start on the same
    state directory, which this test makes, and which does."""
    state = ["--state-dir", str(tmp_path)]
    async with run_daemon(*state) as daemon:
        process = await trio.lowlevel.open_process(
            [*CCX, "run", "--url", daemon.url, "--", "sh", "-c", "echo $$; exec sleep 60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            with trio.fail_after(TIMEOUT):
                assert process.stdout is not None
                assert process.stderr is not None
                child = int(await process.stdout.receive_some())
                daemon.process.kill()
                await daemon.process.wait()
                err = b""
                while chunk := await process.stderr.receive_some():
                    err += chunk
                assert await process.wait() == 125
        finally:
            process.kill()
    line = err.decode()
    assert line.count("\n") == 1, line
    assert line.startswith(f"ccx: lost the connection to {daemon.url} under run "), line
    assert line.endswith(
        ", and the daemon no longer answers (connection refused): nothing ends the run now; "
        "the next ccx serve on the same state directory ends what it left\n"
    ), line
    assert alive(child)  # as it said
    async with run_daemon(*state) as again:
        await again.wait_logged("daemon.leftovers_killed")
    await wait_until(lambda: not alive(child))


@pytest.mark.parametrize(
    ("closing", "words", "status"),
    [
        (">&-", ["run", "--", "echo", "hi"], 0),
        (">&-", ["ps"], 0),
        ("<&-", ["run", "--", "cat"], 0),
        ("<&-", ["run", "--", "sh", "-c", "exit 3"], 3),
        ("2>&-", ["run", "--", "sh", "-c", "echo oops >&2; exit 4"], 4),
    ],
)
async def test_a_closed_stdin_stdout_or_stderr_is_dev_null_to_ccx(
    served: Served, closing: str, words: list[str], status: int
) -> None:
    """ccx started with descriptor 0, 1 or 2 closed crashed with a traceback (EINVAL: the fd
    number was taken by one of trio's own descriptors, which output was written to or stdin
    read from). Now a closed one is /dev/null: the run and ccx's exit status are as ever."""
    line = " ".join(shlex.quote(word) for word in [*CCX, "--url", served.url, *words])
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            ["sh", "-c", f"exec {line} {closing}"],
            stdin=subprocess.DEVNULL,
            capture_stdout=closing != ">&-",
            capture_stderr=closing != "2>&-",
            check=False,
        )
    assert done.returncode == status, done.stderr
    assert not done.stderr, done.stderr
    if closing == "<&-" and status == 0:
        assert done.stdout == b""


async def test_a_closed_stderr_keeps_the_exit_status_of_a_failure() -> None:
    line = " ".join(shlex.quote(word) for word in [*CCX, "--url", unused_url(), "ps"])
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(["sh", "-c", f"exec {line} 2>&-"], check=False)
    assert done.returncode == 69
