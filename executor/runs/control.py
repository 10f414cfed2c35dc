"""Controls of a run, as every protocol applies them: pause, resume, cancel, signal, stdin.

Each returns only once its effect holds (PAUSE: every process stopped; CANCEL: the run is over)
and raises the wire's errors: ``InvalidState`` for what the run's state does not allow,
``ControlTimeout`` when processes did not reach the state in time.  The JSON-RPC handlers and
the MCP control tool both call these; neither has its own copy.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from typing import Literal

from cc_executor.executor.runs.live import LiveRun
from cc_executor.protocol import JSON, ControlTimeout, InvalidParams, InvalidState
from cc_executor.supervision import ControlTimeout as SupervisionControlTimeout
from cc_executor.supervision import InvalidTransition, Run, Rung

Action = Literal["PAUSE", "RESUME", "CANCEL"]


def invalid_state(run: Run, exc: InvalidTransition) -> InvalidState:
    """The wire error for a control the run's state does not allow."""
    return InvalidState(f"run {run.run_id}: {exc}", {"run": run.run_id, "state": run.state.value})


async def cancel_quietly(run: Run, reason: str) -> None:
    """End a run through the ladder; one that completed meanwhile is already where we want it."""
    with contextlib.suppress(InvalidTransition):
        await run.cancel(reason)


async def end(live: LiveRun, reason: str) -> None:
    """End a run through the ladder and wait until its completion is recorded."""
    if live.durable is not None:
        live.durable.journal.unblock()  # a full journal in "block" mode must not hold it up
    await cancel_quietly(live.run, reason)
    await live.done.wait()


async def apply_control(
    live: LiveRun, action: Action, reason: str, held: Callable[[], None] | None = None
) -> Rung | None:
    """Pause, resume or cancel; return once the effect holds (with the rung for CANCEL).

    `held` is called as soon as a PAUSE or RESUME holds, before its event is queued (see
    supervision's `Run.pause`); a CANCEL returns when it holds.
    """
    run = live.run
    if action != "CANCEL" and live.durable is not None and live.durable.journal.holding:
        raise journal_blocked(live, action)
    try:
        match action:
            case "PAUSE":
                await run.pause(held)
                return None
            case "RESUME":
                await run.resume(held)
                return None
            case _:
                if live.durable is not None:
                    live.durable.journal.unblock()
                return await run.cancel(reason)
    except InvalidTransition as exc:
        raise invalid_state(run, exc) from None
    except SupervisionControlTimeout as exc:
        pids: list[JSON] = list(exc.not_stopped)
        raise ControlTimeout(
            f"run {run.run_id}: {exc}", {"run": run.run_id, "pids": pids}
        ) from None


def journal_blocked(live: LiveRun, action: Action) -> InvalidState:
    """The wire error for a PAUSE or RESUME of a durable run whose journal waits (a full disk,
    a failing write, its quota in "block" mode): the run is held through the pipe until the
    journal can write again, and its state change could not be recorded before then, so the
    control would wait with it; it is refused, the run unchanged, and CANCEL still ends it."""
    assert live.durable is not None
    journal = live.durable.journal
    why = journal.fault.reason if journal.fault is not None else "journal quota reached"
    message = (
        f"run {live.run_id}: its journal cannot take writes now ({why}); the run is held "
        f"until it can, and {action} would wait with it (CANCEL ends the run)"
    )
    journal_data: JSON = {"blocked": True, "error": why}
    return InvalidState(
        message, {"run": live.run_id, "state": live.run.state.value, "journal": journal_data}
    )


def send_signal(live: LiveRun, name: str) -> None:
    """Deliver a named signal to the run's group and every process that left it."""
    try:
        live.run.send_signal(signal.Signals[name])
    except InvalidTransition as exc:
        raise invalid_state(live.run, exc) from None


async def write_stdin(live: LiveRun, data: bytes, eof: bool) -> None:
    """Write to the child's stdin (returning once the bytes are in the pipe), then maybe close."""
    run = live.run
    if live.session:
        raise InvalidParams(
            f"run {run.run_id} is a Claude session: its stdin is the daemon's; use claude.send",
            {"run": run.run_id},
        )
    try:
        if data:
            await run.write_stdin(data)
        if eof:
            await run.close_stdin()
    except InvalidTransition as exc:
        raise invalid_state(run, exc) from None
