"""`ccx run` as local as it can be, `ccx ps` as a person reads it, and `--help` that helps."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio
from ccx_testing import Served, unused_url

from cc_executor.executor.cli import build_parser

TIMEOUT = 60
CCX = [sys.executable, "-m", "cc_executor.executor"]


async def ccx(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(TIMEOUT):
        return await trio.run_process(
            [*CCX, *args], cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
        )


async def test_run_uses_our_directory_on_a_local_daemon(served: Served, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    done = await ccx("--url", served.url, "run", "--", "pwd", cwd=tmp_path)
    assert done.stdout == f"{tmp_path}\n".encode()
    done = await ccx("--url", served.url, "run", "--cwd", "sub", "--", "pwd", cwd=tmp_path)
    assert done.stdout == f"{tmp_path / 'sub'}\n".encode()  # relative to ours, not the daemon's
    done = await ccx("--url", served.url, "run", "--daemon-cwd", "--", "pwd", cwd=tmp_path)
    assert done.stdout == f"{os.getcwd()}\n".encode()  # the in-process daemon's own


async def test_a_shell_line_as_argv_gets_a_hint_that_works(served: Served) -> None:
    done = await ccx("--url", served.url, "run", "--", "echo hi | wc -c")
    assert done.returncode == 127
    first, hint = done.stderr.decode().splitlines()
    assert first.startswith("ccx: could not start the command: ")
    suggested = re.search(r"Try: (ccx .*?) — or ", hint)
    assert suggested is not None, hint
    words = shlex.split(suggested.group(1))
    assert words[1:3] == ["--url", served.url]
    again = await ccx(*words[1:])  # the suggestion as printed, run
    assert (again.returncode, again.stdout.strip()) == (0, b"3")


async def listed(url: list[str], *needles: str) -> list[str]:
    """`ccx ps` rows, once every needle shows in it (bounded by the caller's fail_after)."""
    while True:
        ps = await ccx(*url, "ps")
        header, *rows = ps.stdout.decode().splitlines()
        assert header.split() == ["RUN", "STATE", "AGE", "BYTES", "SEQ", "COMMAND"]
        if all(any(needle in row for row in rows) for needle in needles):
            return rows
        await trio.sleep(0.05)


async def test_ps_lists_oldest_first_with_ages_and_quoted_commands(served: Served) -> None:
    url = ["--url", served.url]
    scripts = ("echo 'a b'; exec sleep 30", "exec sleep 31")  # the older first
    commands = [shlex.join(["sh", "-c", script]) for script in scripts]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            # Each from its own ccx (its own connection): ps shows the runs of every one.
            processes = []
            for i, script in enumerate(scripts):
                argv = [*CCX, *url, "run", "--", "sh", "-c", script]
                run = partial(trio.run_process, argv, check=False, stdout=subprocess.DEVNULL)
                processes.append(await nursery.start(run))
                rows = await listed(url, *commands[: i + 1])
            for process in processes:
                process.send_signal(signal.SIGINT)
    older, newer = (next(row for row in rows if row.endswith(c)) for c in commands)
    assert rows.index(older) < rows.index(newer)  # in start order; COMMAND keeps its quoting
    _run, state, age, *_ = older.split()
    assert state == "running"
    assert re.fullmatch(r"\d+\.\ds", age)


def test_every_flag_has_a_description_and_every_command_an_example(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal's width
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in {"ccx": parser, **commands}.items():
        for action in sub._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, f"{name} {action.option_strings} has no description"
        if name not in ("ccx", "review", "prompts"):
            assert "examples:" in (sub.epilog or ""), f"{name} has no example"
        too_wide = [line for line in sub.format_help().splitlines() if len(line) > 100]
        assert not too_wide, f"{name} --help is not wrapped: {too_wide}"
    top = parser.format_help()
    assert "Ctrl-C on `ccx run` interrupts the command" in top  # the keys are documented
    assert "Ctrl-C on `ccx attach` stops following" in top


async def test_url_before_the_command_and_did_you_mean(served: Served) -> None:
    done = await ccx("--url", served.url, "status")
    assert done.returncode == 0
    assert done.stdout.startswith(b"cc-executor ")
    done = await ccx("sevre")
    assert done.returncode == 2
    assert done.stderr.decode().endswith("unknown command 'sevre'; did you mean 'serve'?\n")


async def test_a_flag_the_command_does_not_take_is_refused_by_that_command() -> None:
    # `ccx ps --bogus` printed ccx's own usage and "ccx: error: ...", as if the flag were
    # meant for ccx itself; a mistyped flag got no suggestion.
    done = await ccx("ps", "--bogus")
    assert done.returncode == 2
    assert done.stderr.decode() == (
        "usage: ccx ps [-h] [--url URL] [--token TOKEN] [--json]\n"
        "ccx ps: error: unrecognized arguments: --bogus\n"
    )
    done = await ccx("run", "--tiemout=3", "--", "true")
    assert done.returncode == 2
    assert done.stderr.decode().endswith(
        "ccx run: error: unrecognized arguments: --tiemout=3; did you mean --timeout?\n"
    )
    done = await ccx("--bogus", "ps")  # before the command: ccx's own
    assert done.returncode == 2
    assert done.stderr.decode().endswith("ccx: error: unrecognized arguments: --bogus\n")


async def test_url_before_review_reaches_the_review_commands(tmp_path: Path) -> None:
    url = unused_url()  # the message names the URL that was used
    done = await ccx("--url", url, "review", "run", "--root", str(tmp_path))
    assert done.returncode != 0
    assert f"ccx: no cc-executor daemon at {url} " in done.stderr.decode()
    # It said "start one with: ccx serve", which starts one on 8003, not at the URL's port.
    port = url.rsplit(":", 1)[1].rstrip("/")
    assert done.stderr.decode().endswith(f" — start one with: ccx serve --port {port}\n")
