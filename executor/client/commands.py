"""`ccx`'s client commands: run, ps, attach, logs, pause, resume, cancel, signal, status.

Each command opens one connection, does one thing and prints it; failures are one line on
stderr (`ccx: ...`) saying what to do about them where we can tell.
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import trio

from cc_executor.executor.client.config import DEFAULT_URL, CommandLineConfig
from cc_executor.executor.client.connection import Connection, open_connection
from cc_executor.executor.client.errors import (
    ClientError,
    ConnectionLost,
    DaemonUnavailable,
    PolicyRefusedError,
    RunNotFoundError,
    ServerError,
    SpawnFailedError,
)
from cc_executor.executor.client.events import Output
from cc_executor.executor.client.streaming import HANDLED_SIGNALS, event_json, stream_run
from cc_executor.executor.client.terminal import Terminal, human_bytes, human_seconds
from cc_executor.executor.logs import configure_logging
from cc_executor.protocol import ControlParams, Params, SignalParams

CLIENT_COMMANDS = ("run", "ps", "attach", "logs", "pause", "resume", "cancel", "signal", "status")


def add_client_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The client subcommands, beside `serve`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("CCX_URL", DEFAULT_URL),
        help=f"the daemon's WebSocket URL (default {DEFAULT_URL}; CCX_URL)",
    )
    common.add_argument(
        "--token", default=os.environ.get("CCX_TOKEN"), help="bearer token (CCX_TOKEN)"
    )
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = sub.add_parser(
        "run",
        parents=[common],
        help="run a command on the daemon, streaming its output",
        description="Run CMD on the daemon. Its stdout and stderr become ours as they arrive, "
        "our stdin (when not a terminal) becomes its, and ccx exits with its exit status "
        "(128+N when signal N ended it). Ctrl-C cancels the run, a second Ctrl-C kills it; "
        "Ctrl-Z pauses it (fg resumes).",
    )
    p.add_argument("--detach", action="store_true", help="start a durable run, print its id")
    p.add_argument("--durable", action="store_true", help="let the run outlive this connection")
    p.add_argument("--cwd", help="working directory of the child")
    p.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="add a variable (repeatable)"
    )
    p.add_argument("--timeout", type=float, help="absolute limit in seconds")
    p.add_argument("--idle-timeout", type=float, help="limit on seconds without output")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")

    sub.add_parser("ps", parents=[common], help="list runs: state, age, bytes, last seq")

    p = sub.add_parser("attach", parents=[common], help="follow a durable run's output")
    p.add_argument("run")
    p.add_argument("--from", dest="from_seq", type=int, default=0, metavar="SEQ")

    p = sub.add_parser("logs", parents=[common], help="print a durable run's output so far")
    p.add_argument("run")

    for name, text in (("pause", "pause"), ("resume", "resume"), ("cancel", "cancel")):
        p = sub.add_parser(name, parents=[common], help=f"{text} a run")
        p.add_argument("run")

    p = sub.add_parser("signal", parents=[common], help="send a signal to a run")
    p.add_argument("run")
    p.add_argument("signal", help="USR1, SIGTERM, ...")

    sub.add_parser("status", parents=[common], help="the daemon's health")


def run_client_command(args: argparse.Namespace, config: CommandLineConfig | None = None) -> int:
    """Run one client subcommand; returns the exit status."""
    config = config or CommandLineConfig()
    # The library logs only what ccx cannot say itself (daemon bugs), and never on stdout.
    configure_logging("error", json=False)
    term = Terminal(status_line=not args.json)
    failure = config.own_failure_status if args.command == "run" else 1
    try:
        return trio.run(_COMMANDS[args.command], args, config, term)
    except DaemonUnavailable as exc:
        term.message(
            f"ccx: no cc-executor daemon at {exc.url} ({exc.reason}) — start one with: ccx serve"
        )
    except PolicyRefusedError as exc:
        term.message(f"ccx: refused by the daemon's policy (rule: {exc.rule}): {exc.message}")
    except RunNotFoundError as exc:
        term.message(f"ccx: unknown run: {exc.message}")
    except SpawnFailedError as exc:
        term.message(f"ccx: could not start the command: {exc.message}")
        return config.spawn_failure_status if args.command == "run" else 1
    except ServerError as exc:
        term.message(f"ccx: {exc.message} (error {exc.code})")
    except ConnectionLost as exc:
        term.message(f"ccx: lost the connection to {args.url}: {exc}")
    except (ClientError, UsageError) as exc:
        term.message(f"ccx: {exc}")
    return failure


class UsageError(Exception):
    """A mistake in the command line that argparse cannot see."""


def _connect(args: argparse.Namespace, config: CommandLineConfig) -> Any:
    return open_connection(args.url, token=args.token, config=config.connection)


def _require_durable(conn: Connection, what: str) -> None:
    if not conn.supports_durable:
        raise UsageError(
            f"{what} needs durable runs, and the daemon at {conn.url} does not offer them"
        )


async def _print(term: Terminal, text: str) -> None:
    await term.write("stdout", text.encode() + b"\n")


async def _print_json(term: Terminal, value: Any) -> None:
    await term.write("stdout", orjson.dumps(value) + b"\n")


# -- the commands ------------------------------------------------------------------------


async def _run(args: argparse.Namespace, config: CommandLineConfig, term: Terminal) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise UsageError("nothing to run: ccx run [options] -- CMD ARGS...")
    env: dict[str, str] = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--env wants NAME=VALUE, not {item!r}")
        env[name] = value
    durable = args.detach or args.durable
    feed = not args.detach and not os.isatty(0)
    with trio.open_signal_receiver(*HANDLED_SIGNALS) as signals:
        async with _connect(args, config) as conn:
            if durable:
                _require_durable(conn, "--detach" if args.detach else "--durable")
            try:
                run = await conn.execute(
                    argv,
                    cwd=args.cwd,
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
                    await _print_json(term, {"run": run.id, "pid": run.pid})
                else:
                    await _print(term, run.id)
                await run.detach()
                return 0
            return await stream_run(
                run, term, config, as_json=args.json, feed_stdin=feed, signals=signals
            )


async def _attach(args: argparse.Namespace, config: CommandLineConfig, term: Terminal) -> int:
    with trio.open_signal_receiver(*HANDLED_SIGNALS) as signals:
        async with _connect(args, config) as conn:
            _require_durable(conn, "attach")
            run = await conn.attach(args.run, args.from_seq)
            return await stream_run(
                run, term, config, as_json=args.json, feed_stdin=False, signals=signals
            )


async def _logs(args: argparse.Namespace, config: CommandLineConfig, term: Terminal) -> int:
    async with _connect(args, config) as conn:
        _require_durable(conn, "logs")
        last = (await conn.run_status(args.run)).last_seq
        run = await conn.attach(args.run, 0)
        async for event in run:
            if args.json:
                await _print_json(term, event_json(event))
            elif isinstance(event, Output):
                await term.write(event.stream, event.data)
            if event.seq >= last:
                break
        if run.completed is None:
            run.close_stream()
            await run.detach()
    return 0


async def _ps(args: argparse.Namespace, config: CommandLineConfig, term: Terminal) -> int:
    async with _connect(args, config) as conn:
        runs = await conn.list()
    if args.json:
        await _print_json(term, [status.raw for status in runs])
        return 0
    rows = [("RUN", "STATE", "AGE", "BYTES", "SEQ", "COMMAND")]
    for status in runs:
        state = status.state
        if status.outcome is not None:
            state = f"{status.outcome}({status.exit_code})"
        rows.append(
            (
                status.run,
                state,
                human_seconds(status.elapsed),
                human_bytes(status.stdout_bytes + status.stderr_bytes),
                str(status.last_seq),
                " ".join(status.argv),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(5)]
        await _print(term, "  ".join([*cells, row[5]]))
    return 0


async def _status(args: argparse.Namespace, config: CommandLineConfig, term: Terminal) -> int:
    async with _connect(args, config) as conn:
        status = await conn.status()
        capabilities = sorted(conn.capabilities)
    if args.json:
        await _print_json(term, {**status.raw, "capabilities": capabilities})
        return 0
    await _print(term, f"{status.server} {status.version} at {args.url}")
    await _print(
        term,
        f"up {human_seconds(status.uptime)}, {status.connections} connection(s), "
        f"{status.live_runs} live run(s), {status.runs_started} started"
        + (", draining" if status.draining else ""),
    )
    await _print(term, "capabilities: " + " ".join(capabilities))
    return 0


def _request(
    build: Callable[[argparse.Namespace], Params],
) -> Callable[[argparse.Namespace, CommandLineConfig, Terminal], Awaitable[int]]:
    """A command that sends one request about a run and prints its result."""

    async def command(args: argparse.Namespace, config: CommandLineConfig, term: Terminal) -> int:
        try:
            params = build(args)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        async with _connect(args, config) as conn:
            result = await conn.call_params(params)
        if args.json:
            await _print_json(term, result)
        else:
            await _print(term, " ".join(f"{k}={v}" for k, v in result.items()))
        return 0

    return command


def _signal_params(args: argparse.Namespace) -> SignalParams:
    name = args.signal.upper()
    if name.isdigit():
        name = signal.Signals(int(name)).name
    return SignalParams(args.run, name)


_COMMANDS: dict[str, Callable[[argparse.Namespace, CommandLineConfig, Terminal], Awaitable[int]]]
_COMMANDS = {
    "run": _run,
    "attach": _attach,
    "logs": _logs,
    "ps": _ps,
    "status": _status,
    "pause": _request(lambda args: ControlParams("PAUSE", args.run)),
    "resume": _request(lambda args: ControlParams("RESUME", args.run)),
    "cancel": _request(lambda args: ControlParams("CANCEL", args.run)),
    "signal": _request(_signal_params),
}
