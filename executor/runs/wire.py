"""Supervision's outcomes as the wire's completions: the one place that translates them.

Supervision knows nothing of JSON and protocol nothing of processes; this module says how an
ending looks to a client (protocol's `Completion`), including the original CC-Executor's words
(`status`: completed, failed, canceled; a negative `exit_code` for a signal).
"""

from __future__ import annotations

import signal
from collections.abc import Mapping

import attrs
import orjson

from cc_executor.protocol.claude.notices import (
    CLAUDE_TURN_ENDED,
    SESSION_NOTICES,
    SessionNotice,
    decode_session_notice,
    session_params,
)
from cc_executor.protocol.messages import JSON
from cc_executor.protocol.notices import (
    Completion,
    RunCompleted,
    RunEvent,
    RunOutput,
    RunPaused,
    RunResumed,
)
from cc_executor.supervision import (
    Cancelled,
    Completed,
    CompletedEvent,
    Exited,
    Lost,
    Note,
    Outcome,
    Output,
    Rung,
    RunState,
    SequencedEvent,
    Signalled,
    SpawnFailed,
    StateEvent,
    TimedOut,
)
from cc_executor.supervision.journal import Journal


def signal_name(number: int) -> str:
    """SIGTERM for 15; the number as text for signals Python has no name for."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def rung_name(rung: Rung) -> str:
    """``sigint``, ``sigterm`` or ``sigkill``: the rung of the ladder that ended a run."""
    return rung.name.lower()


def _exit(exit: Exited | Signalled) -> tuple[int, str | None]:
    if isinstance(exit, Exited):
        return exit.code, None
    # Negative like Python's returncode, as the original CC-Executor reported it.
    return -exit.signal, signal_name(exit.signal)


def completion(
    outcome: Outcome, pid: int | None, pgid: int | None, completed: Completed | None = None
) -> Completion:
    """How a run ended, for `process.completed` and the run's status."""
    ending = _ending(outcome)
    if completed is None:
        return attrs.evolve(ending, pid=pid, pgid=pgid)
    return attrs.evolve(
        ending,
        pid=pid,
        pgid=pgid,
        execution_time=round(completed.duration, 6),
        stdout_bytes=completed.stdout_bytes,
        stderr_bytes=completed.stderr_bytes,
    )


def _ending(outcome: Outcome) -> Completion:
    match outcome:
        case Exited(code=code):
            return Completion("completed" if code == 0 else "failed", "exited", code)
        case Signalled():
            return Completion("failed", "signalled", *_exit(outcome))
        case Cancelled(reason=reason, rung=rung, exit=exit):
            code, name = _exit(exit)
            return Completion("canceled", "cancelled", code, name, reason, rung_name(rung))
        case TimedOut(kind=kind, rung=rung, exit=exit):
            code, name = _exit(exit)
            return Completion("failed", "timed_out", code, name, rung=rung_name(rung), timeout=kind)
        case SpawnFailed(message=message):
            return Completion("failed", "spawn_failed", reason=message)
        case Lost(reason=reason):
            return Completion("failed", "lost", reason=reason)


def completed(completed: Completed, pid: int | None, pgid: int | None) -> Completion:
    """The completion of a `Completed` event (outcome and byte counts)."""
    return completion(completed.outcome, pid, pgid, completed)


def internal_failure(
    reason: str,
    pid: int | None,
    pgid: int | None,
    stdout_bytes: int,
    stderr_bytes: int,
    duration: float,
) -> Completion:
    """The completion of a run the daemon itself failed (its error boundary caught a bug)."""
    return Completion(
        "failed",
        "failed",
        reason=reason,
        pid=pid,
        pgid=pgid,
        execution_time=round(duration, 6),
        stdout_bytes=stdout_bytes,
        stderr_bytes=stderr_bytes,
    )


def outcome_name(outcome: Outcome | None) -> str:
    """The wire's word for how a run ended (``exited``, ``cancelled``, ...)."""
    return "unknown" if outcome is None else completion(outcome, None, None).outcome


def note_body(notice: SessionNotice) -> tuple[str, bytes]:
    """What a session's notice is posted as (the pump numbers it, the journal keeps it):
    its method and its params without `run` and `seq`, as JSON."""
    params = session_params(notice)
    del params["run"], params["seq"]
    return notice.method, orjson.dumps(params)


def event_notice(
    run_id: str, pid: int | None, pgid: int | None, event: SequencedEvent, final: Completion | None
) -> RunEvent | SessionNotice:
    """The notice of one numbered event; `final` is the completion to report for a
    ``CompletedEvent`` (None: translate the event's own).

    Raises:
        ValueError: a note that is no session notice this daemon knows (never posted by it).
    """
    match event:
        case Note(seq=seq, name=name, data=data):
            notice = decode_session_notice(name, {**orjson.loads(data), "run": run_id, "seq": seq})
            if notice is None:
                raise ValueError(f"run {run_id}: unknown note {name!r} at seq {seq}")
            return notice
        case Output(seq=seq, stream=stream, data=data):
            return RunOutput(run_id, seq, stream, data)
        case StateEvent(seq=seq, state=state):
            if state is RunState.PAUSED:
                return RunPaused(run_id, seq, pid, pgid)
            return RunResumed(run_id, seq, pid, pgid)
        case CompletedEvent(seq=seq, completed=done):
            return RunCompleted(run_id, seq, final or completed(done, pid, pgid))


def was_session(last_notes: Mapping[str, bytes]) -> bool:
    """Whether a journal's notes are a Claude session's (any of them: one may be damaged)."""
    return any(name in SESSION_NOTICES for name in last_notes)


def claude_summary(
    completion: Completion | None, last_notes: Mapping[str, bytes], session_id: str | None
) -> Mapping[str, JSON] | None:
    """The `claude` object of a durable run's status: its completion's; for a Claude session
    recovered after a restart (no summary in its completion), what its journal's last notes
    say — its Claude session id (else `session_id`, found in its stdout) and turns, enough to
    `claude.resume` it."""
    if completion is not None and completion.claude is not None:
        return completion.claude
    if not was_session(last_notes):
        return None
    ended = orjson.loads(last_notes.get(CLAUDE_TURN_ENDED, b"{}"))
    result = ended.get("result", {})
    return {
        "session": True,
        "state": "ended",
        "recovered": True,
        "turns": ended.get("turn", 0),
        "session_id": (result.get("session_id") if isinstance(result, dict) else None)
        or session_id,
    }


def journal_object(journal: Journal) -> dict[str, JSON]:
    """A durable run's ``journal`` in ``status``, ``list`` and ``attach`` (docs/protocol.md)."""
    removed: JSON = None
    if journal.removed is not None:
        removed = {"first": journal.removed.first, "last": journal.removed.last}
    fault = journal.fault
    error: JSON = None
    if fault is not None:
        error = {"seq": fault.seq, "reason": fault.reason, "policy": fault.policy}
    damaged: list[JSON] = [
        dict(offset=d.offset, bytes=d.length, first_seq=d.first_seq, last_seq=d.last_seq)
        for d in journal.damaged
    ]
    head: JSON = None
    if journal.head_damage is not None:
        hd = journal.head_damage
        head = {"reason": hd.reason, "offset": hd.offset, "bytes": hd.length}
    meta = journal.meta
    return {
        "bytes": journal.size,
        "quota_bytes": None if meta is None else meta.quota_bytes,
        "quota_policy": None if meta is None else meta.quota_policy,
        "error_policy": journal.config.error_policy,
        "blocked": journal.holding,
        "gap_from_seq": None if journal.gap is None else journal.gap.seq,
        "removed": removed,
        "error": error,
        "faults": journal.fault_count,
        "damaged": damaged,
        "truncated_bytes": journal.truncated_bytes,
        "kept_aside": journal.kept_aside,
        "meta_damaged": head,
    }
