"""Why a run ended, in words, for the endings that are not a plain exit.

A run that exits (with any code) or dies of a signal says so through ccx's exit status alone,
as it would locally. Every other ending gets one line on stderr: a timeout (after how long, and
which limit), a cancel by someone else, the daemon's shutdown, a run lost with a daemon.
"""

from __future__ import annotations

import attrs

from cc_executor.executor.client.events import Completed

# The daemon's reasons (the completion's `reason`) for a run it cancels.
SHUTDOWN_REASON = "daemon shutdown"  # while draining
CANCEL_REASON = "cancelled by client"  # a CANCEL from some connection


@attrs.frozen
class Asked:
    """What this ccx asked of the run: its limits, and whether it ended it itself."""

    timeout: float | None = None
    idle_timeout: float | None = None
    interrupted: bool = False  # Ctrl-C: SIGINT, then SIGKILL
    cancelled: bool = False  # a BrokenPipe or an explicit cancel from this ccx


def seconds(value: float) -> str:
    """1 s, 2.5 s."""
    return f"{value:g} s"


def ended_by(completed: Completed) -> str:
    """Which rung of the cancel ladder (or which signal) ended it, for the message."""
    if completed.rung:
        return f"; {completed.rung.upper()} ended it"
    return f"; {completed.signal} ended it" if completed.signal else ""


def ending_message(completed: Completed, asked: Asked) -> str | None:
    """The line for an ending that is not a plain exit, or None."""
    run = completed.run
    match completed.outcome:
        case "timed_out" if completed.timeout == "idle":
            limit = asked.idle_timeout or completed.execution_time
            after = f" for {seconds(limit)}" if limit is not None else ""
            return f"ccx: run {run} timed out: no output{after} (idle timeout){ended_by(completed)}"
        case "timed_out":
            limit = asked.timeout or completed.execution_time
            after = f" after {seconds(limit)}" if limit is not None else ""
            return f"ccx: run {run} timed out{after}{ended_by(completed)}"
        case "cancelled" if completed.reason == SHUTDOWN_REASON:
            return f"ccx: run {run} was cancelled: the daemon shut down{ended_by(completed)}"
        case "cancelled" if asked.cancelled or asked.interrupted:
            return None
        case "cancelled":
            if completed.reason == CANCEL_REASON:
                why = " by another client"
            else:
                why = f" ({completed.reason})" if completed.reason else ""
            return f"ccx: run {run} was cancelled{why}{ended_by(completed)}"
        case "lost":
            return f"ccx: run {run} was lost: {completed.reason or 'no reason given'}"
        case "spawn_failed":
            return f"ccx: run {run} could not start: {completed.reason or 'no reason given'}"
    if asked.interrupted and completed.signal == "SIGKILL":
        return f"ccx: run {run} killed"
    return None


def shutdown_message(run: str, grace: float | None) -> str:
    """The line when the daemon says it is draining under a run we follow."""
    if not grace:  # no time to finish: "run ID then it is cancelled" said nothing of when
        return f"ccx: the daemon is shutting down: run {run} is cancelled now"
    within = f"has {seconds(grace)} to finish, then it is cancelled"
    return f"ccx: the daemon is shutting down: run {run} {within}"
