"""`ccx run` and `ccx attach`: a run's events to our stdout/stderr, our keys to the run.

Signals, as a terminal user expects them:

- `ccx run`: the first Ctrl-C (SIGINT) is sent on to the run's whole process group, as a local
  Ctrl-C would reach a foreground job; the second kills it at once (SIGKILL) and ccx exits 130;
  a third leaves without waiting (the daemon ends a run whose connection goes). A command that
  handles SIGINT and exits by itself exits with its own status, as it would locally.
- `ccx attach`: Ctrl-C stops following; the run goes on (`ccx cancel` ends it); exit 130.
  A reader of our stdout that goes away (`ccx attach RUN | head`) stops it likewise (exit
  141), where under `ccx run` it ends the run, as a pipe would.
- Ctrl-Z (SIGTSTP) pauses the run and then stops ccx itself, so the shell gets its prompt back
  as for any job; `fg` continues ccx (SIGCONT), which resumes the run.

Endings that are not a plain exit are explained on stderr (endings.py), and so is the daemon's
announcement that it is draining.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
from typing import Any, Literal

import attrs
import orjson
import trio

from cc_executor.executor.client.config import CommandLineConfig
from cc_executor.executor.client.connection import Connection, open_connection
from cc_executor.executor.client.endings import Asked, ending_message, shutdown_message
from cc_executor.executor.client.errors import (
    NOT_ANSWERING,
    ClientError,
    ConnectionLost,
    DaemonUnavailable,
    InvalidStateError,
    JournalUnreadable,
    LimitExceededError,
    ServerError,
)
from cc_executor.executor.client.events import (
    Completed,
    Gap,
    JournalError,
    Output,
    Paused,
    Resumed,
    RunEvent,
)
from cc_executor.executor.client.events import exit_status as shell_status
from cc_executor.executor.client.exits import ExitStatus
from cc_executor.executor.client.liveness import watch_daemon
from cc_executor.executor.client.parsers import Target
from cc_executor.executor.client.run import Run
from cc_executor.executor.client.terminal import Terminal, human_bytes, human_seconds

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTSTP, signal.SIGCONT)
# Seconds ccx waits to learn whether a daemon that dropped our connection still answers.
DAEMON_PROBE_WAIT = 2.0
# Seconds Ctrl-C on `ccx attach` waits for the daemon to take the detach before leaving anyway.
DETACH_WAIT = 2.0
# Ctrl-C on `ccx run`: the first is sent on, the second kills, the third leaves.
INTERRUPT, KILL, LEAVE = 1, 2, 3


@attrs.define
class Showing:
    """One run being shown: what the status line says and how the run is being ended."""

    run: Run
    conn: Connection
    term: Terminal
    target: Target
    mode: Literal["run", "attach"]
    asked: Asked
    state: str = "running"
    bytes: int = 0
    interrupts: int = 0
    cancelled_by_us: bool = False
    stopped_by_us: bool = False
    left: bool = False  # we stopped showing it before it ended (Ctrl-C)
    events: int = 0  # events taken from the run so far
    waiting: bool = False  # waiting for the run's next event (not writing one out)
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    def leave(self) -> None:
        """Stop showing the run now, whatever it is doing."""
        self.left = True
        self.scope.cancel()

    def asked_now(self) -> Asked:
        return attrs.evolve(
            self.asked, interrupted=self.interrupts > 0, cancelled=self.cancelled_by_us
        )


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
        case Gap(run=run, seq=seq, reason=reason, details=details):
            return {"event": "gap", "run": run, "seq": seq, "reason": reason, **details}
        case JournalError(run=run, seq=seq, reason=reason, policy=policy):
            return {
                "event": "journal_error",
                "run": run,
                "seq": seq,
                "reason": reason,
                "policy": policy,
            }
        case Completed(run=run, seq=seq, completion=completion):
            return {"event": "completed", "run": run, "seq": seq, **attrs.asdict(completion)}
        case _:  # a Claude session's notice: its method names it
            from cc_executor.protocol.claude.notices import session_params

            return {"event": event.method, **session_params(event)}


def journal_line(event: RunEvent) -> str | None:
    """What ccx says on stderr of a gap in the journal or a failed journal write, else None
    (a journal that cannot be read ends the follow: JournalUnreadable says it, once)."""
    if isinstance(event, Gap):
        return f"ccx: output from seq {event.seq} was not recorded ({event.reason})"
    if isinstance(event, JournalError) and not event.ends_follow:
        then = "the run waits for the disk" if event.policy == "block" else "the run is ended"
        return f"ccx: the daemon could not record the run ({event.reason}); {then}"
    return None


def exit_status(completed: Completed, showing: Showing) -> int:
    """The command's status; 130 once our Ctrl-C had to kill it."""
    if showing.interrupts >= KILL and completed.outcome in ("signalled", "cancelled"):
        return ExitStatus.INTERRUPTED
    return shell_status(completed)


async def _feed_stdin(showing: Showing, chunk: int) -> None:
    """Our stdin to the child's, one request at a time (each waits for the daemon's reply),
    until end of file; then the child's stdin is closed."""
    run = showing.run
    try:
        while True:
            data = await trio.to_thread.run_sync(os.read, 0, chunk, abandon_on_cancel=True)
            if not data:
                await run.close_stdin()
                return
            await run.write_stdin(data)
    except InvalidStateError:
        return  # the child closed its stdin or ended: the rest of ours has nowhere to go
    except LimitExceededError as exc:
        showing.term.message(f"ccx: the daemon takes no more input for run {run.id}: {exc}")
    except ServerError as exc:
        showing.term.message(f"ccx: input for run {run.id} refused: {exc}")
    except ConnectionLost:
        return  # the stream says so


async def _quietly(request: Any, *args: Any) -> None:
    """A control whose failure changes nothing: the run ended (or went) meanwhile."""
    with contextlib.suppress(InvalidStateError, ConnectionLost):
        await request(*args)


async def _interrupt(showing: Showing, nursery: trio.Nursery) -> None:
    run, term = showing.run, showing.term
    if showing.mode == "attach":
        term.message(
            f"ccx: stopped following run {run.id}; it goes on "
            f"({showing.target.ccx('attach', run.id)} follows it again, "
            f"{showing.target.ccx('cancel', run.id)} ends it)"
        )
        # Bounded: a daemon that does not answer (stopped) must not keep us following.
        with contextlib.suppress(ServerError, ConnectionLost), trio.move_on_after(DETACH_WAIT):
            await run.detach()
        showing.leave()
        return
    showing.interrupts += 1
    if showing.interrupts == INTERRUPT:
        showing.state = "interrupted"
        term.message(f"ccx: interrupting run {run.id} (SIGINT); Ctrl-C again kills it")
        nursery.start_soon(_quietly, run.signal, "SIGINT")
    elif showing.interrupts == KILL:
        showing.state = "killing"
        term.message(f"ccx: killing run {run.id} (SIGKILL); Ctrl-C again leaves at once")
        nursery.start_soon(_quietly, run.signal, "SIGKILL")
    else:
        showing.leave()


async def _handle_signals(signals: Any, showing: Showing, nursery: trio.Nursery) -> None:
    run, term = showing.run, showing.term
    async for signum in signals:
        try:
            if signum == signal.SIGINT:
                await _interrupt(showing, nursery)
            elif signum == signal.SIGTSTP:
                await run.pause()
                showing.state = "paused"
                showing.stopped_by_us = True
                term.message(
                    f"ccx: run {run.id} paused; `fg` resumes it "
                    f"(or: {showing.target.ccx('resume', run.id)})"
                )
                os.kill(os.getpid(), signal.SIGSTOP)  # hand the terminal back to the shell
            elif signum == signal.SIGCONT and showing.stopped_by_us:
                showing.stopped_by_us = False
                await run.resume()
                showing.state = "running"
        except InvalidStateError:
            pass  # the run ended (or was resumed elsewhere) meanwhile
        except ServerError as exc:
            term.message(f"ccx: run {run.id}: {exc}")
        except ConnectionLost:
            return  # the stream says so


async def _tell_shutdown(showing: Showing) -> None:
    notice = await showing.conn.wait_shutdown()
    showing.term.message(shutdown_message(showing.run.id, notice.grace))


async def _draw_status(showing: Showing, interval: float, started: float) -> None:
    run = showing.run
    while True:
        elapsed = human_seconds(trio.current_time() - started)
        showing.term.draw(
            f"ccx: run {run.id} {showing.state} {elapsed} {human_bytes(showing.bytes)}"
            f" seq {run.last_seq}"
        )
        await trio.sleep(interval)


async def _show(showing: Showing, as_json: bool) -> Completed:
    term = showing.term
    completed: Completed | None = None
    showing.waiting = True
    async for event in showing.run:
        showing.waiting = False
        showing.events += 1
        if as_json:
            await term.write("stdout", orjson.dumps(event_json(event)) + b"\n")
        elif isinstance(event, Output):
            showing.bytes += len(event.data)
            await term.write(event.stream, event.data)
        elif isinstance(event, Paused | Resumed):
            showing.state = "paused" if isinstance(event, Paused) else "running"
        elif (line := journal_line(event)) is not None:
            term.message(line)
        if isinstance(event, Completed):
            completed = event
        showing.waiting = True
    showing.waiting = False
    if completed is None:  # attached from its last seq: the stream ends with what it had
        completed = showing.run.completed
    assert completed is not None
    return completed


def lost_message(lost: ConnectionLost, showing: Showing) -> str:
    """The line for a connection lost under a run: what becomes of the run, as far as ccx can
    know. A durable run outlives its connection, not its daemon: when reconnecting failed,
    ccx cannot tell which happened, and says how to find out."""
    run, target = showing.run, showing.target
    attach = target.ccx("attach", run.id)
    head = f"ccx: lost the connection to {target.url} under run {run.id}"
    if lost.unreachable is not None:
        return (
            f"{head}, and reconnecting failed ({lost.unreachable.reason}); a durable run "
            f"outlives its connection but not its daemon: {attach} says what became of it "
            "once the daemon answers again"
        )
    return f"{head}; {f'it goes on: {attach}' if run.durable else 'the daemon ends it'}"


async def daemon_gone(target: Target, config: CommandLineConfig) -> DaemonUnavailable | None:
    """After a connection lost under a run that is not durable: why nothing answers at the
    URL now (the daemon died: SIGKILL, the OOM killer), or None when something does."""
    quick = attrs.evolve(config.connection, connect_timeout=DAEMON_PROBE_WAIT)
    for _ in range(2):
        try:
            async with open_connection(target.url, token=target.token, config=quick):
                return None
        except DaemonUnavailable as exc:
            # Its subclasses are answers (a refusal, another server): the daemon is not gone.
            if type(exc) is not DaemonUnavailable:
                return None
            gone = exc
        except ClientError:
            return None
        # A killed daemon's kernel closes our socket before its listener: a connect in
        # between is taken, then dropped unanswered. Once more, to hear how it is now.
        if not gone.reason.startswith(NOT_ANSWERING):
            break
    return gone


async def stream_run(
    showing: Showing,
    config: CommandLineConfig,
    *,
    as_json: bool,
    feed_stdin: bool,
    signals: Any,
) -> int:
    """Show the run until it completes (or we leave it); return ccx's exit status."""
    run, term = showing.run, showing.term
    completed: Completed | None = None
    broken: BrokenPipeError | ConnectionLost | None = None
    with showing.scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_handle_signals, signals, showing, nursery)
            nursery.start_soon(_tell_shutdown, showing)
            nursery.start_soon(
                watch_daemon,
                showing.conn,
                term,
                config,
                f"run {run.id}",
                lambda: (showing.events, showing.waiting),
            )
            if feed_stdin:
                nursery.start_soon(_feed_stdin, showing, config.stdin_chunk)
            if term.status_enabled:
                interval, now = config.status_interval, trio.current_time()
                nursery.start_soon(_draw_status, showing, interval, now)
            try:
                completed = await _show(showing, as_json)
            except (BrokenPipeError, ConnectionLost) as exc:
                broken = exc
            finally:
                term.erase()
                nursery.cancel_scope.cancel()
    if showing.left:
        return ExitStatus.INTERRUPTED
    if isinstance(broken, BrokenPipeError):
        with trio.move_on_after(config.connection.disconnect_timeout * 5):
            if showing.mode == "attach":
                # `ccx attach RUN | head`: a viewer went away; the run goes on, as after Ctrl-C.
                with contextlib.suppress(ServerError, ConnectionLost):
                    await run.detach()
            else:
                # Our reader went away (`ccx run ... | head`): end the run as a pipe would.
                showing.cancelled_by_us = True
                await _quietly(run.cancel)
        return 128 + signal.SIGPIPE
    if isinstance(broken, JournalUnreadable):
        from cc_executor.executor.client.failures import unreadable_journal

        term.message(unreadable_journal(broken, showing.target))
        return ExitStatus.OWN_FAILURE if showing.mode == "run" else ExitStatus.FAILED
    if broken is not None:
        gone = None if run.durable else await daemon_gone(showing.target, config)
        if gone is not None:
            # A dead daemon ends nothing: its run lives on until a daemon starts on its state.
            term.message(
                f"ccx: lost the connection to {showing.target.url} under run {run.id}, and "
                f"the daemon no longer answers ({gone.reason}): nothing ends the run now; the "
                "next ccx serve on the same state directory ends what it left"
            )
        else:
            term.message(lost_message(broken, showing))
        return ExitStatus.OWN_FAILURE
    assert completed is not None
    message = ending_message(completed, showing.asked_now())
    if message is not None:
        term.message(message)
    return exit_status(completed, showing)
