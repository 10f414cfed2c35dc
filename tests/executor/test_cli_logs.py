"""The daemon's logs: plain values in every field, JSON off a terminal, words on one."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from typing import Any

import orjson
import trio
from ccx_testing import run_daemon

from cc_executor.executor.client import open_connection
from cc_executor.executor.logs import plain, plain_values
from cc_executor.supervision import Rung, Signalled, TimedOut

TIMEOUT = 30
# What a Python repr looks like in a log field: `<Rung.SIGTERM: 'SIGTERM'>`, `TimedOut(kind=...`.
REPR = re.compile(r"<\w+\.\w+: |\b[A-Z]\w*\(\w+=")


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return [value] if isinstance(value, str) else []


def test_plain_turns_outcomes_enums_and_exceptions_into_json_values() -> None:
    outcome = TimedOut("absolute", Rung.SIGTERM, Signalled(15))
    assert plain(outcome) == {
        "type": "TimedOut",
        "kind": "absolute",
        "rung": "SIGTERM",
        "exit": {"type": "Signalled", "signal": 15},
    }
    assert plain({"error": ValueError("bad"), "at": (Rung.SIGKILL,)}) == {
        "error": "ValueError: bad",
        "at": ["SIGKILL"],
    }
    orjson.dumps(plain(outcome))  # serializable as it is


def test_plain_values_passes_plain_fields_as_they_are_and_no_enum_raw() -> None:
    event = {"n": 3, "flag": True, "s": "x", "none": None, "f": 1.5, "rung": Rung.SIGTERM}
    event["signal"] = signal.Signals.SIGTERM  # an int enum: an int, but not plain
    shown = plain_values(None, "info", event)
    assert shown == {
        "n": 3,
        "flag": True,
        "s": "x",
        "none": None,
        "f": 1.5,
        "rung": "SIGTERM",
        "signal": 15,
    }
    assert type(shown["signal"]) is int
    assert type(shown["rung"]) is str


async def test_json_lines_off_a_terminal_hold_no_reprs() -> None:
    # At debug level, so the supervision layer's own lines (run.completed...) are read too.
    async with run_daemon("--log-level", "debug") as daemon:
        with trio.fail_after(TIMEOUT):
            async with open_connection(daemon.url) as conn:
                await (await conn.execute(["sleep", "5"], timeout=0.2)).wait()
            daemon.process.terminate()
            await daemon.process.wait()
        lines = [orjson.loads(line) for line in daemon.stderr_lines if line.startswith("{")]
    ends = [line for line in lines if line["event"] == "run.end"]
    # How the run ended, in the wire's plain words, not an outcome's repr.
    assert (ends[0]["outcome"], ends[0]["timeout"], ends[0]["rung"]) == (
        "timed_out",
        "absolute",
        "sigterm",
    )
    completed = [line for line in lines if line["event"] == "run.completed"]
    assert completed[0]["outcome"]["type"] == "TimedOut", completed
    closes = [line for line in lines if line["event"] == "session.close"]
    assert closes[0]["close_code"] == 1000
    for line in lines:
        for text in strings(line):
            assert REPR.search(text) is None, line


async def test_an_unknown_log_format_is_refused() -> None:
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [sys.executable, "-m", "cc_executor.executor", "serve", "--port", "0"],
            env={"CCX_LOG_FORMAT": "xml", "PATH": "/usr/bin:/bin"},
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr == b"ccx serve: CCX_LOG_FORMAT must be console or json, not 'xml'\n"
