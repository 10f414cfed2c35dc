"""Translation between supervision's typed events and the wire's notification params.

Supervision knows nothing of JSON; protocol knows nothing of processes.  This module is the one
place that says how an outcome or a run's status looks on the wire, including the original
CC-Executor's field names (``status``, ``exit_code``, ``execution_time``, ``pid``, ``pgid``).
"""

from __future__ import annotations

import signal
import time

from cc_executor.protocol import JSON
from cc_executor.supervision import (
    Cancelled,
    Completed,
    Exited,
    Lost,
    Outcome,
    Run,
    Rung,
    RunState,
    Signalled,
    SpawnFailed,
    TimedOut,
)


def signal_name(number: int) -> str:
    """SIGTERM for 15; the number as text for signals Python has no name for."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def rung_name(rung: Rung) -> str:
    """``sigterm`` or ``sigkill``: the rung of the cancel ladder that ended a run."""
    return rung.name.lower()


def _exit_fields(exit: Exited | Signalled) -> dict[str, JSON]:
    if isinstance(exit, Exited):
        return {"exit_code": exit.code, "signal": None}
    # Negative like Python's returncode, as the original CC-Executor reported it.
    return {"exit_code": -exit.signal, "signal": signal_name(exit.signal)}


def outcome_fields(outcome: Outcome) -> dict[str, JSON]:
    """``status`` (the original's word), ``outcome`` (why it ended) and their details."""
    fields: dict[str, JSON]
    match outcome:
        case Exited(code=code):
            status = "completed" if code == 0 else "failed"
            fields = {"status": status, "outcome": "exited", **_exit_fields(outcome)}
        case Signalled():
            fields = {"status": "failed", "outcome": "signalled", **_exit_fields(outcome)}
        case Cancelled(reason=reason, rung=rung, exit=exit):
            fields = {
                "status": "canceled",
                "outcome": "cancelled",
                "reason": reason,
                "rung": rung_name(rung),
                **_exit_fields(exit),
            }
        case TimedOut(kind=kind, rung=rung, exit=exit):
            fields = {
                "status": "failed",
                "outcome": "timed_out",
                "timeout": kind,
                "rung": rung_name(rung),
                **_exit_fields(exit),
            }
        case SpawnFailed(message=message):
            fields = {
                "status": "failed",
                "outcome": "spawn_failed",
                "reason": message,
                "exit_code": None,
                "signal": None,
            }
        case Lost(reason=reason):
            fields = {
                "status": "failed",
                "outcome": "lost",
                "reason": reason,
                "exit_code": None,
                "signal": None,
            }
    return fields


def outcome_name(outcome: Outcome | None) -> str:
    """The wire's word for how a run ended (``exited``, ``cancelled``, ...)."""
    return "unknown" if outcome is None else str(outcome_fields(outcome)["outcome"])


def completion_params(run: Run, completed: Completed) -> dict[str, JSON]:
    """Params of ``process.completed`` (``run`` and ``seq`` are added by the protocol)."""
    return completion_params_of(run.pid, run.pgid, completed)


def completion_params_of(pid: int, pgid: int, completed: Completed) -> dict[str, JSON]:
    """``completion_params`` for a run known by its pid and pgid (e.g. from its journal)."""
    return {
        **outcome_fields(completed.outcome),
        "pid": pid,
        "pgid": pgid,
        "execution_time": round(completed.duration, 6),
        "stdout_bytes": completed.stdout_bytes,
        "stderr_bytes": completed.stderr_bytes,
    }


def state_params(run: Run, state: RunState) -> tuple[str, dict[str, JSON]]:
    """Method and params of the notification for a pause or resume."""
    return state_params_of(run.pid, run.pgid, state)


def state_params_of(pid: int, pgid: int, state: RunState) -> tuple[str, dict[str, JSON]]:
    """``state_params`` for a run known by its pid and pgid."""
    word = "paused" if state is RunState.PAUSED else "resumed"
    return f"process.{word}", {"status": word, "pid": pid, "pgid": pgid}


def run_status(run: Run, last_seq: int, now: float) -> dict[str, JSON]:
    """A run as ``status`` and ``list`` show it."""
    status: dict[str, JSON] = {
        "run": run.run_id,
        "state": run.state.value,
        "pid": run.pid,
        "pgid": run.pgid,
        "argv": list(run.argv),
        "elapsed": round(now - run.started_at, 6),
        # Unix time: `now` and `started_at` are trio's clock, which has no epoch.
        "started": round(time.time() - (now - run.started_at), 6),
        "stdout_bytes": run.stdout_bytes,
        "stderr_bytes": run.stderr_bytes,
        "last_seq": last_seq,
    }
    if run.outcome is not None:
        status.update(outcome_fields(run.outcome))
    return status
