"""`ccx`'s client commands: run, ps, attach, logs, pause, resume, cancel, signal, status
(and claude, in claude_commands.py).

Each command opens one connection, does one thing and prints it; a failure is one line on
stderr (failures.py) saying what to do about it, with its own exit status (exits.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import attrs
import orjson
import trio

from cc_executor import protocol  # its names load on first use: `ccx ps` needs none of them
from cc_executor.executor.client.config import CommandLineConfig
from cc_executor.executor.client.connection import Connection, open_connection
from cc_executor.executor.client.endings import Asked
from cc_executor.executor.client.errors import (
    ClientError,
    DaemonUnavailable,
    InvalidParamsError,
    InvalidUrl,
    RunNotFoundError,
)
from cc_executor.executor.client.events import Output, RunStatus
from cc_executor.executor.client.exits import ExitStatus
from cc_executor.executor.client.parsers import Target, target
from cc_executor.executor.client.terminal import Terminal, human_bytes, human_seconds, shown_argv


class UsageError(Exception):
    """A mistake in the command line that argparse cannot see."""


@attrs.frozen
class Invocation:
    """One client command: its arguments, the daemon it names, where it writes."""

    args: argparse.Namespace
    target: Target
    config: CommandLineConfig
    term: Terminal

    def connect(self) -> Any:
        return open_connection(
            self.target.url, token=self.target.token, config=self.config.connection
        )

    async def say(self, text: str) -> None:
        await self.term.write("stdout", text.encode() + b"\n")

    async def say_json(self, value: Any) -> None:
        await self.term.write("stdout", orjson.dumps(value) + b"\n")


def run_client_command(args: argparse.Namespace, config: CommandLineConfig | None = None) -> int:
    """Run one client subcommand; returns the exit status."""
    invocation = Invocation(
        args,
        target(args, os.environ),
        config or CommandLineConfig(),
        Terminal(status_line=not args.json),
    )
    try:
        return trio.run(_COMMANDS[args.command], invocation)
    except BrokenPipeError:
        # Whoever read our stdout stopped (`ccx ps | head -1`): end as a Unix tool killed by
        # SIGPIPE would, quietly and with its status.
        return 128 + signal.SIGPIPE
    except (InvalidUrl, DaemonUnavailable) as exc:
        from cc_executor.executor.client.failures import connect_failure  # only on failure

        failure = connect_failure(exc, invocation.target)
    except UsageError as exc:
        from cc_executor.executor.client.failures import usage_text

        invocation.term.message(f"ccx {args.command}: {usage_text(str(exc))}")
        return ExitStatus.USAGE
    except ClientError as exc:
        from cc_executor.executor.client.failures import request_failure

        failure = request_failure(
            exc,
            invocation.target,
            command=args.command,
            # (with --shell the line went to the daemon's shell: no hint to use one)
            argv=_argv(args) if args.command == "run" and not args.shell else (),
        )
    invocation.term.message(failure.text)
    return failure.status


def leave(status: int) -> NoReturn:
    """Exit the process now with `status`, stdout and stderr flushed: a client command that is
    done has nothing left to run, and finalizing the interpreter (trio, trio-websocket and the
    ~300 modules behind them) would cost more CPU than the command's exchange did (W6)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(status)


def _require_durable(conn: Connection, what: str) -> None:
    if not conn.supports_durable:
        raise UsageError(
            f"{what} needs durable runs, and the daemon at {conn.url} does not offer them"
        )


# -- run ---------------------------------------------------------------------------------


def _argv(args: argparse.Namespace) -> list[str]:
    argv: list[str] = args.argv
    return argv[1:] if argv[:1] == ["--"] else argv


def _env(args: argparse.Namespace) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--env wants NAME=VALUE, not {item!r}")
        env[name] = value
    return env


def working_dir(args: argparse.Namespace, daemon: Target) -> str | None:
    """Ours when the daemon is on this machine (the rule); the daemon's when it is not."""
    if args.daemon_cwd:
        if args.cwd is not None:
            raise UsageError("--cwd and --daemon-cwd exclude each other")
        return None
    given: str | None = args.cwd
    if not daemon.local:
        return given  # a path on the daemon's machine, as given
    try:
        return os.path.abspath(given or os.getcwd())
    except FileNotFoundError:
        raise UsageError("our working directory is gone: pass --cwd DIR") from None


def _is_dev_null(fd: int) -> bool:
    try:
        ours, null = os.fstat(fd), os.stat(os.devnull)
    except OSError:
        return True  # no stdin at all
    return (ours.st_dev, ours.st_ino) == (null.st_dev, null.st_ino)


def _stdin_forwarded(args: argparse.Namespace) -> bool:
    """A pipe or a file always (not /dev/null: the child's own is that already); a terminal
    only while ccx is its foreground job (a background ccx reading it would get SIGTTIN)."""
    if args.detach or _is_dev_null(0):
        return False
    if not os.isatty(0):
        return True
    try:
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


async def _run(inv: Invocation) -> int:
    args = inv.args
    argv = _argv(args)
    if not argv:
        raise UsageError("nothing to run: ccx run [options] -- CMD ARGS...")
    command: str | list[str] = " ".join(argv) if args.shell else argv
    env, cwd = _env(args), working_dir(args, inv.target)
    durable = args.detach or args.durable
    feed = _stdin_forwarded(args)
    from cc_executor.executor.client import streaming  # not for the commands that list

    with trio.open_signal_receiver(*streaming.HANDLED_SIGNALS) as signals:
        async with inv.connect() as conn:
            if durable:
                _require_durable(conn, "--detach" if args.detach else "--durable")
            try:
                run = await conn.execute(
                    command,
                    shell=args.shell,
                    cwd=cwd,
                    env=env,
                    stdin=feed,
                    timeout=args.timeout,
                    idle_timeout=args.idle_timeout,
                    durable=durable,
                )
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            if args.detach:
                if args.json:
                    await inv.say_json({"run": run.id, "pid": run.pid})
                else:
                    await inv.say(run.id)
                await run.detach()
                return 0
            asked = Asked(timeout=args.timeout, idle_timeout=args.idle_timeout)
            showing = streaming.Showing(run, conn, inv.term, inv.target, "run", asked)
            return await streaming.stream_run(
                showing, inv.config, as_json=args.json, feed_stdin=feed, signals=signals
            )


# -- following ---------------------------------------------------------------------------


async def attach_durable(conn: Connection, run: str, from_seq: int) -> Any:
    """`conn.attach`, saying "not durable" for a run the daemon has that is not (its -32002
    says "no durable run": ccx's "no run ... for you — ccx ps lists your runs" was wrong
    then, as ps lists it)."""
    try:
        return await conn.attach(run, from_seq)
    except RunNotFoundError:
        try:
            status = await conn.run_status(run)
        except RunNotFoundError:
            status = None
        if status is None or status.durable:
            raise
        raise InvalidParamsError(
            protocol.ErrorCode.INVALID_PARAMS,
            f"run {run} is not durable: only a durable run can be followed from another "
            "connection (ccx run --durable, or --detach, starts one)",
            {"run": run},
        ) from None


async def _attach(inv: Invocation) -> int:
    from cc_executor.executor.client import streaming

    with trio.open_signal_receiver(*streaming.HANDLED_SIGNALS) as signals:
        async with inv.connect() as conn:
            _require_durable(conn, "attach")
            run = await attach_durable(conn, inv.args.run, inv.args.from_seq)
            showing = streaming.Showing(run, conn, inv.term, inv.target, "attach", Asked())
            return await streaming.stream_run(
                showing, inv.config, as_json=inv.args.json, feed_stdin=False, signals=signals
            )


async def _logs(inv: Invocation) -> int:
    from cc_executor.executor.client.streaming import event_json, journal_line

    async with inv.connect() as conn:
        _require_durable(conn, "logs")
        last = (await conn.run_status(inv.args.run)).last_seq
        run = await attach_durable(conn, inv.args.run, 0)
        async for event in run:
            if inv.args.json:
                await inv.say_json(event_json(event))
            elif isinstance(event, Output):
                await inv.term.write(event.stream, event.data)
            elif (line := journal_line(event)) is not None:  # never silent: a gap, a failure
                inv.term.message(line)
            if event.seq >= last:
                break
        if run.completed is None:
            run.close_stream()
            await run.detach()
    return 0


# -- listing -----------------------------------------------------------------------------


def state_word(status: RunStatus) -> str:
    """running, paused, exited(3), signalled(SIGTERM), cancelled, timed_out, lost, ...; a live
    Claude session's own state (idle, running, requires_action, paused)."""
    match status.outcome:
        case None if status.claude and status.claude.get("session"):
            return str(status.claude.get("state", status.state))  # idle, requires_action, ...
        case None:
            return status.state
        case "exited":
            return f"exited({status.exit_code})"
        case "signalled":
            return f"signalled({status.signal or status.exit_code})"
        case outcome:
            return outcome


def _no_command(status: RunStatus) -> str:
    damaged = status.journal is not None and status.journal.get("meta_damaged") is not None
    return "(unknown: its journal's META is damaged)" if damaged else ""


async def _ps(inv: Invocation) -> int:
    async with inv.connect() as conn:
        runs = await conn.list()
    runs.sort(key=lambda status: (status.started is None, status.started or 0.0))
    if inv.args.json:
        from cc_executor.protocol.server_codec import run_info_object  # every result's codec

        await inv.say_json([run_info_object(status) for status in runs])
        return 0
    now = time.time()
    rows = [("RUN", "STATE", "AGE", "BYTES", "SEQ", "COMMAND")]
    for status in runs:
        age = "-" if status.started is None else human_seconds(max(0.0, now - status.started))
        rows.append(
            (
                status.run,
                state_word(status),
                age,
                human_bytes(status.stdout_bytes + status.stderr_bytes),
                str(status.last_seq),
                shown_argv(status.argv) or _no_command(status),
            )
        )
    columns = len(rows[0]) - 1  # the last, COMMAND, is not padded
    widths = [max(len(row[i]) for row in rows) for i in range(columns)]
    lines = [
        "  ".join([*(row[i].ljust(widths[i]) for i in range(columns)), row[-1]]) for row in rows
    ]
    await inv.say("\n".join(lines))  # one write (a worker thread's round trip), not one a row
    return 0


async def _status(inv: Invocation) -> int:
    async with inv.connect() as conn:
        status = await conn.status()
        capabilities = sorted(conn.capabilities)
    if inv.args.json:
        from cc_executor.protocol.server_codec import result_object

        await inv.say_json({**result_object(status), "capabilities": capabilities})
        return 0
    await inv.say(f"{status.server} {status.version} at {inv.target.url}")
    await inv.say(
        f"up {human_seconds(status.uptime)}, {status.connections} connection(s), "
        f"{status.live_runs} live run(s), {status.runs_started} started"
        + (", draining" if status.draining else "")
    )
    await inv.say("capabilities: " + " ".join(capabilities))
    return 0


# -- controls ----------------------------------------------------------------------------


def _control_done(result: dict[str, Any]) -> str:
    """A control's reply in words (one spelling: cancelled)."""
    run = result.get("run")
    match result.get("status"):
        case "canceled" | "cancelled":
            rung = result.get("rung")
            return f"run {run} cancelled" + (f" ({str(rung).upper()} ended it)" if rung else "")
        case "signalled":
            return f"sent {result.get('signal')} to run {run}"
        case other:
            return f"run {run} {other}"


async def _answered(inv: Invocation, conn: Connection, params: protocol.Params) -> Any:
    """The reply to `params`; meanwhile a daemon that stops answering is said, as under ccx
    run (a CANCEL waits up to the daemon's term grace: long enough to wonder)."""
    from cc_executor.executor.client.liveness import watch_daemon

    replies: list[dict[str, Any]] = []
    failures: list[ClientError] = []
    async with trio.open_nursery() as nursery:

        async def call() -> None:
            try:
                replies.append(await conn.call_params(params))
            except ClientError as exc:  # raised below, out of the nursery's group
                failures.append(exc)
            nursery.cancel_scope.cancel()

        nursery.start_soon(call)
        nursery.start_soon(watch_daemon, conn, inv.term, inv.config, "its reply")
    if failures:
        raise failures[0]
    return replies[0]


def _request(
    build: Callable[[argparse.Namespace], protocol.Params],
) -> Callable[[Invocation], Awaitable[int]]:
    """A command that sends one request about a run and prints its result."""

    async def command(inv: Invocation) -> int:
        try:
            params = build(inv.args)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        async with inv.connect() as conn:
            result = await _answered(inv, conn, params)
        if inv.args.json:
            await inv.say_json(result)
        else:
            await inv.say(_control_done(result))
        return 0

    return command


def _signal_params(args: argparse.Namespace) -> protocol.SignalParams:
    name = args.signal.upper()
    if name.isdigit():
        try:
            name = signal.Signals(int(name)).name
        except ValueError:  # "99 is not a valid Signals"
            raise UsageError(f"unknown signal {args.signal!r}") from None
    from cc_executor.protocol.params import STATE_SIGNALS  # loaded by SignalParams anyway

    full = name if name.startswith("SIG") else f"SIG{name}"
    if full in STATE_SIGNALS:  # the daemon's words for it name its control, not ccx's
        raise UsageError(
            f"{full} is not sent as a signal: ccx pause {args.run} stops the run's every "
            f"process, ccx resume {args.run} continues them"
        )
    return protocol.SignalParams(args.run, name)


async def _claude(inv: Invocation) -> int:
    from cc_executor.executor.client.claude_commands import claude_command

    return await claude_command(inv)


_COMMANDS: dict[str, Callable[[Invocation], Awaitable[int]]] = {
    "claude": _claude,
    "run": _run,
    "attach": _attach,
    "logs": _logs,
    "ps": _ps,
    "status": _status,
    "pause": _request(lambda args: protocol.ControlParams("PAUSE", args.run)),
    "resume": _request(lambda args: protocol.ControlParams("RESUME", args.run)),
    "cancel": _request(lambda args: protocol.ControlParams("CANCEL", args.run)),
    "signal": _request(_signal_params),
}
