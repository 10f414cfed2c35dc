"""`ccx run` and `ccx attach`: a run's events to our stdout/stderr, our signals to the run.

Signals: the first Ctrl-C (SIGINT) cancels the run through the daemon's ladder, a second one
sends it SIGKILL (the protocol has no forced CANCEL). Ctrl-Z (SIGTSTP) pauses the run and then
stops ccx itself, so the shell gets its prompt back as for any job; `fg` continues ccx
(SIGCONT), which resumes the run. A run cancelled by us exits 1; otherwise the exit status is the
child's (128+N when a signal ended it).
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
from typing import Any

import attrs
import orjson
import trio

from cc_executor.executor.client.config import CommandLineConfig
from cc_executor.executor.client.errors import InvalidStateError
from cc_executor.executor.client.events import (
    Completed,
    Gap,
    Output,
    Paused,
    Resumed,
    RunEvent,
)
from cc_executor.executor.client.run import Run
from cc_executor.executor.client.terminal import Terminal, human_bytes, human_seconds

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTSTP, signal.SIGCONT)


@attrs.define
class _Progress:
    """What the status line shows and how the run is being ended."""

    state: str = "running"
    bytes: int = 0
    cancelled_by_us: bool = False
    stopped_by_us: bool = False


def event_json(event: RunEvent) -> dict[str, Any]:
    """A run event as one `--json` line."""
    match event:
        case Output(run=run, seq=seq, stream=stream, data=data):
            try:
                text: dict[str, Any] = {"data": data.decode("utf-8")}
            except UnicodeDecodeError:
                text = {"data": base64.b64encode(data).decode("ascii"), "encoding": "base64"}
            return {"event": "output", "run": run, "seq": seq, "stream": stream, **text}
        case Paused(run=run, seq=seq):
            return {"event": "paused", "run": run, "seq": seq}
        case Resumed(run=run, seq=seq):
            return {"event": "resumed", "run": run, "seq": seq}
        case Gap(run=run, seq=seq, reason=reason):
            return {"event": "gap", "run": run, "seq": seq, "reason": reason}
        case Completed():
            return {"event": "completed", **attrs.asdict(event)}


def exit_status(completed: Completed, progress: _Progress) -> int:
    return 1 if progress.cancelled_by_us else completed.exit_status


async def _feed_stdin(run: Run, chunk: int) -> None:
    """Our stdin to the child's, until end of file (then the child's stdin is closed)."""
    try:
        while True:
            data = await trio.to_thread.run_sync(os.read, 0, chunk, abandon_on_cancel=True)
            if not data:
                await run.close_stdin()
                return
            await run.write_stdin(data)
    except InvalidStateError:
        return  # the child closed its stdin or ended: the rest of ours has nowhere to go


async def _handle_signals(
    signals: Any, run: Run, term: Terminal, progress: _Progress, nursery: trio.Nursery
) -> None:
    async for signum in signals:
        try:
            if signum == signal.SIGINT:
                if not progress.cancelled_by_us:
                    progress.cancelled_by_us = True
                    progress.state = "cancelling"
                    term.message(f"ccx: cancelling run {run.id} (Ctrl-C again to kill it)")
                    nursery.start_soon(_cancel, run)
                else:
                    progress.state = "killing"
                    term.message(f"ccx: killing run {run.id}")
                    await run.signal("SIGKILL")
            elif signum == signal.SIGTSTP:
                await run.pause()
                progress.state = "paused"
                progress.stopped_by_us = True
                term.message(f"ccx: run {run.id} paused; `fg` resumes it (or: ccx resume {run.id})")
                os.kill(os.getpid(), signal.SIGSTOP)  # hand the terminal back to the shell
            elif signum == signal.SIGCONT and progress.stopped_by_us:
                progress.stopped_by_us = False
                await run.resume()
                progress.state = "running"
        except InvalidStateError:
            pass  # the run ended (or was resumed elsewhere) meanwhile


async def _cancel(run: Run) -> None:
    with contextlib.suppress(InvalidStateError):  # it ended by itself first
        await run.cancel()


async def _draw_status(
    run: Run, term: Terminal, progress: _Progress, interval: float, started: float
) -> None:
    while True:
        elapsed = human_seconds(trio.current_time() - started)
        term.draw(
            f"ccx: run {run.id} {progress.state} {elapsed} {human_bytes(progress.bytes)}"
            f" seq {run.last_seq}"
        )
        await trio.sleep(interval)


async def stream_run(
    run: Run,
    term: Terminal,
    config: CommandLineConfig,
    *,
    as_json: bool,
    feed_stdin: bool,
    signals: Any,
) -> int:
    """Show the run until it completes; return ccx's exit status."""
    progress = _Progress()
    completed: Completed | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_handle_signals, signals, run, term, progress, nursery)
        if feed_stdin:
            nursery.start_soon(_feed_stdin, run, config.stdin_chunk)
        if term.status_enabled:
            nursery.start_soon(
                _draw_status, run, term, progress, config.status_interval, trio.current_time()
            )
        try:
            async for event in run:
                if as_json:
                    await term.write("stdout", orjson.dumps(event_json(event)) + b"\n")
                elif isinstance(event, Output):
                    progress.bytes += len(event.data)
                    await term.write(event.stream, event.data)
                elif isinstance(event, Paused | Resumed):
                    progress.state = "paused" if isinstance(event, Paused) else "running"
                elif isinstance(event, Gap):
                    term.message(
                        f"ccx: output from seq {event.seq} was not recorded ({event.reason})"
                    )
                if isinstance(event, Completed):
                    completed = event
        except BrokenPipeError:
            # Our reader went away (`ccx run ... | head`): end the run as a pipe would.
            term.erase()
            with trio.move_on_after(config.connection.disconnect_timeout * 5):
                await _cancel(run)
            return 128 + signal.SIGPIPE
        finally:
            term.erase()
            nursery.cancel_scope.cancel()
    assert completed is not None
    if progress.cancelled_by_us:
        term.message(f"ccx: run {run.id} cancelled ({completed.rung or completed.outcome})")
    return exit_status(completed, progress)
