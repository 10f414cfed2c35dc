"""W13: a Claude session turn through the daemon beside the same turn driven directly.

Both sides are the real Claude Code CLI in its long-lived two-way mode (the argv the daemon
builds for `claude {session: true}`, protocol.claude.build_argv), against the test suite's
fake Messages API (tests/claude_fake_api.py) in this process, with the same environment. The
direct side writes `initialize`, then one user line per turn to the CLI's stdin and reads its
stdout until the turn's `result` line; the daemon side sends `claude.send` over a WebSocket and
reads until `claude.turn_ended`. Turns alternate between the two sessions, so that the box's
load falls on both alike, each starting a moment after the other's ended. The daemon's CPU is
read from /proc over its turns and divided by the stream-json lines those turns printed (the
CLI prints the same lines on both sides).
"""

from __future__ import annotations

import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from bench import procfs
from bench.daemon import running_daemon
from bench.wsclient import connect

if TYPE_CHECKING:
    from bench.measure import Sizes

TURN_BOUND = 60.0
# The CLI goes on working for a while after its `result` (it writes the session's transcript);
# each turn starts once the other side's CLI has had that time, so they do not compete.
SETTLE = 0.3
# Each turn streams a reply of this many deltas (--include-partial-messages: a stream-json
# line each), so that a turn has as many events as a real one.
CHUNKS = 50
KEY_VAR = "CCX_BENCH_FAKE_ANTHROPIC_KEY"
TESTS = Path(__file__).resolve().parents[1] / "tests"


@contextmanager
def _fake_api() -> Iterator[str]:
    """The tests' fake Messages API on loopback; yields its base URL."""
    sys.path.insert(0, str(TESTS))
    try:
        from claude_fake_api import serve_fake_api

        with serve_fake_api() as api:
            yield api.base_url
    finally:
        sys.path.remove(str(TESTS))


def _cli() -> str:
    sys.path.insert(0, str(TESTS))
    try:
        from claude_testing import BINARY, INSTALL_COMMAND
    finally:
        sys.path.remove(str(TESTS))
    if not BINARY.exists():
        raise SystemExit(f"W13 needs the Claude Code CLI: {INSTALL_COMMAND}")
    return str(BINARY)


def _environment(home: Path, base_url: str) -> dict[str, str]:
    """What the CLI gets on both sides (the daemon adds its pass-list of the same names)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TERM": "dumb",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "HOME": str(home / "home"),
        "CLAUDE_CONFIG_DIR": str(home / "config"),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "dummy",
    }


class Direct:
    """The CLI on pipes of our own: write a line, read lines until the turn's `result`."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str) -> None:
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=cwd
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout.fileno()
        self.buffer = b""

    def write(self, message: dict[str, Any]) -> None:
        self.stdin.write(orjson.dumps(message) + b"\n")
        self.stdin.flush()

    def read_until(self, kind: str) -> int:
        """Read stdout lines until one of type `kind`; returns how many lines were read."""
        deadline, lines = time.monotonic() + TURN_BOUND, 0
        while time.monotonic() < deadline:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                lines += 1
                if orjson.loads(line).get("type") == kind:
                    return lines
            ready, _, _ = select.select([self.stdout], [], [], deadline - time.monotonic())
            if ready:
                data = os.read(self.stdout, 1 << 16)
                if not data:
                    raise RuntimeError("the CLI exited")
                self.buffer += data
        raise TimeoutError(f"no {kind} line in {TURN_BOUND} s")

    def turn(self, text: str) -> int:
        user = {"role": "user", "content": text}
        self.write({"type": "user", "message": user, "parent_tool_use_id": None, "session_id": ""})
        return self.read_until("result")

    def close(self) -> None:
        self.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _daemon_turn(client: Any, run: str, text: str) -> int:
    """One `claude.send` and the notifications up to its `claude.turn_ended`; counts the
    stream-json events (`claude.event`) of the turn."""
    client.request("claude.send", {"run": run, "content": text})
    deadline, events = time.monotonic() + TURN_BOUND, 0
    while time.monotonic() < deadline:
        message = client.read_message()
        if "error" in message:
            raise RuntimeError(f"claude.send: {message['error']}")
        method = message.get("method")
        if method == "claude.event":
            events += 1
        elif method == "claude.turn_ended":
            return events
    raise TimeoutError(f"no claude.turn_ended in {TURN_BOUND} s")


def w13_claude_turn(sizes: Sizes) -> dict[str, Any]:
    from cc_executor.protocol.claude import ClaudeParams, build_argv

    turns = sizes.w13_turns
    binary = _cli()
    params = {"session": True, "include_partial_messages": True}
    argv = build_argv(binary, ClaudeParams(session=True, include_partial_messages=True))
    with tempfile.TemporaryDirectory() as tmp, _fake_api() as base_url:
        root = Path(tmp)
        for name in ("home", "config", "work"):
            (root / name).mkdir()
        env = _environment(root, base_url)
        direct = Direct(list(argv), env, tmp)
        daemon_env = {
            "CCX_CLAUDE_BINARY": binary,
            "CCX_CLAUDE_BASE_URL": base_url,
            "CCX_CLAUDE_API_KEY_ENV": KEY_VAR,
            KEY_VAR: "dummy",
            "CCX_CLAUDE_ENV": ",".join(
                f"{k}={v}" for k, v in env.items() if k not in ("PATH", "ANTHROPIC_BASE_URL")
            ),
        }
        direct_s: list[float] = []
        daemon_s: list[float] = []
        lines = events = 0
        try:
            direct.write(
                {
                    "type": "control_request",
                    "request_id": "bench-init",
                    "request": {"subtype": "initialize", "hooks": None},
                }
            )
            direct.read_until("control_response")
            with running_daemon(env=daemon_env) as daemon:
                client = connect(daemon.port, bound=TURN_BOUND)
                started = client.call("claude", {**params, "cwd": tmp})
                run = started["run"]
                cpu = 0.0
                for i in range(turns + 1):  # the first turn of each warms up, unmeasured
                    text = f"turn {i}: say hi [chunks:{CHUNKS}]"
                    time.sleep(SETTLE)
                    t0 = time.perf_counter()
                    n = direct.turn(text)
                    t1 = time.perf_counter()
                    time.sleep(SETTLE)
                    c0, t2 = procfs.cpu_seconds(daemon.pid), time.perf_counter()
                    m = _daemon_turn(client, run, text)
                    t3, c1 = time.perf_counter(), procfs.cpu_seconds(daemon.pid)
                    if i:
                        direct_s.append(t1 - t0)
                        daemon_s.append(t3 - t2)
                        cpu += c1 - c0
                        lines += n
                        events += m
                client.call("claude.close", {"run": run}, bound=TURN_BOUND)
                client.close()
        finally:
            direct.close()
    direct_ms = statistics.median(direct_s) * 1000
    daemon_ms = statistics.median(daemon_s) * 1000
    return {
        "turns": turns,
        "direct_turn_ms": direct_ms,
        "daemon_turn_ms": daemon_ms,
        "added_ms": daemon_ms - direct_ms,
        "lines": lines,
        "events": events,
        "daemon_cpu_ms_per_turn": cpu * 1000 / turns,
        "daemon_cpu_ms_per_event": cpu * 1000 / max(lines, 1),
    }


WORKLOADS = {"W13": w13_claude_turn}


def report(runs: list[dict[str, Any]], sizes: Sizes) -> tuple[list[str], list[Any]]:
    """The report's W13 section and its targets."""
    from bench.report import Target, _col

    rows = [
        f"### W13 a Claude session turn — {sizes.w13_turns} turns through the daemon beside the "
        "same turns driven directly on the CLI's stdin/stdout",
        "",
        "The real CLI (`--include-partial-messages`) against the fake Messages API in both "
        f"cases, each turn a reply streamed in {CHUNKS} deltas; turns alternate between the "
        "two sessions. A turn is from writing the user message (direct) or sending "
        "`claude.send` (daemon) to reading the turn's `result` line (direct) or "
        "`claude.turn_ended` (daemon).",
        "",
        "| turn p50 ms, direct | turn p50 ms, daemon | added per turn ms | stream-json lines "
        "| daemon CPU ms per turn | daemon CPU ms per event |",
        "|---|---|---|---|---|---|",
        f"| {_col(runs, 'direct_turn_ms')} | {_col(runs, 'daemon_turn_ms')} | "
        f"{_col(runs, 'added_ms', '{:.2f}')} | {_col(runs, 'lines', '{:.0f}')} | "
        f"{_col(runs, 'daemon_cpu_ms_per_turn', '{:.2f}')} | "
        f"{_col(runs, 'daemon_cpu_ms_per_event', '{:.3f}')} |",
    ]
    return rows, [
        Target("W13 added per turn ≤ 5 ms", [r["added_ms"] for r in runs], lambda v: v <= 5),
        Target(
            "W13 daemon CPU per stream-json event ≤ 0.2 ms",
            [r["daemon_cpu_ms_per_event"] for r in runs],
            lambda v: v <= 0.2,
            "{:.3f}",
        ),
    ]


SECTIONS = {"W13": report}
