"""The wire form of what the server sends: typed notices and results to JSON.

This is the daemon's half (`notice_message`, `result_object`); the client's, back from JSON
(`decode_notice`, `decode_*`), is server_decoding.py, which loads only the classes a client
decodes into.  Field names and order are the original CC-Executor's where it
had the message (`status`, `pid`, `pgid`, `exit_code`, `execution_time`, ...); optional fields
are left out rather than sent as null, except `exit_code` and `signal`, which a completion
always carries.
"""

import bisect
from collections.abc import Iterable

import orjson

from cc_executor.protocol.claude.notices import session_params
from cc_executor.protocol.messages import JSON, Notification
from cc_executor.protocol.names import (
    CONNECTED,
    PROCESS_CANCELED,
    PROCESS_COMPLETED,
    PROCESS_GAP,
    PROCESS_JOURNAL_ERROR,
    PROCESS_PAUSED,
    PROCESS_RESUMED,
    PROCESS_STARTED,
    SHUTDOWN,
)
from cc_executor.protocol.notices import (
    ClaudeNotice,
    Completion,
    Connected,
    Notice,
    RunCompleted,
    RunGap,
    RunJournalError,
    RunOutput,
    RunPaused,
    RunResumed,
    RunStarted,
    Shutdown,
)
from cc_executor.protocol.params import LIST_PAGE_BYTES, list_cursor, parse_list_cursor
from cc_executor.protocol.results import (
    Attached,
    ClaudeAnswered,
    ClaudeClosed,
    ClaudeDecided,
    ClaudeInterrupted,
    ClaudeSent,
    ControlDone,
    DaemonInfo,
    Detached,
    Queued,
    Result,
    RunInfo,
    RunList,
    SignalSent,
    Started,
    StdinWritten,
)


def completion_fields(completion: Completion) -> dict[str, JSON]:
    """The fields of a completion, as `process.completed` and a completed run's status."""
    fields: dict[str, JSON] = {"status": completion.status, "outcome": completion.outcome}
    if completion.timeout is not None:
        fields["timeout"] = completion.timeout
    if completion.reason is not None:
        fields["reason"] = completion.reason
    if completion.rung is not None:
        fields["rung"] = completion.rung
    fields["exit_code"] = completion.exit_code
    fields["signal"] = completion.signal
    return fields


def canceled_message(notice: RunCompleted) -> Notification:
    """`process.canceled`, which the original sent after its reply to a CANCEL: the original
    profile sends it just before a cancelled run's `process.completed` (not sequenced)."""
    completion = notice.completion
    params: dict[str, JSON] = {
        "run": notice.run,
        "status": "canceled",
        "pid": completion.pid,
        "pgid": completion.pgid,
    }
    return Notification(PROCESS_CANCELED, params)


def _completion_params(run: str, seq: int, completion: Completion) -> dict[str, JSON]:
    params: dict[str, JSON] = {"run": run, "seq": seq, **completion_fields(completion)}
    params["pid"] = completion.pid
    params["pgid"] = completion.pgid
    params["execution_time"] = completion.execution_time
    params["stdout_bytes"] = completion.stdout_bytes
    params["stderr_bytes"] = completion.stderr_bytes
    if completion.claude is not None:
        params["claude"] = dict(completion.claude)
    return params


def notice_message(notice: Notice) -> Notification:
    """The notification for `notice` (output is encoded by `codec.encode_output`)."""
    match notice:
        case RunCompleted(run=run, seq=seq, completion=completion):
            return Notification(PROCESS_COMPLETED, _completion_params(run, seq, completion))
        case RunPaused(run=run, seq=seq, pid=pid, pgid=pgid):
            params = {"run": run, "seq": seq, "status": "paused", "pid": pid, "pgid": pgid}
            return Notification(PROCESS_PAUSED, params)
        case RunResumed(run=run, seq=seq, pid=pid, pgid=pgid):
            params = {"run": run, "seq": seq, "status": "resumed", "pid": pid, "pgid": pgid}
            return Notification(PROCESS_RESUMED, params)
        case RunStarted(run=run, pid=pid, pgid=pgid, argv=argv, durable=durable):
            started: dict[str, JSON] = {
                "run": run,
                "status": "started",
                "pid": pid,
                "pgid": pgid,
                "argv": list(argv),
            }
            if durable:
                started["durable"] = True
            return Notification(PROCESS_STARTED, started)
        case RunGap(run=run, seq=seq, reason=reason, details=details):
            return Notification(PROCESS_GAP, {"run": run, "seq": seq, "reason": reason, **details})
        case RunJournalError(run=run, seq=seq, reason=reason, policy=policy):
            params = {"run": run, "seq": seq, "reason": reason, "policy": policy}
            return Notification(PROCESS_JOURNAL_ERROR, params)
        case ClaudeNotice(run=run, event=event):
            from cc_executor.protocol.claude.events import CLAUDE_EVENT  # Claude runs only
            from cc_executor.protocol.claude.stream import event_params

            return Notification(CLAUDE_EVENT, {"run": run, **event_params(event)})
        case Connected():
            connected: dict[str, JSON] = {
                "session_id": notice.session_id,
                "version": notice.version,
                "server": notice.server,
                "capabilities": list(notice.capabilities),
                "limits": dict(notice.limits),
            }
            if notice.protocol is not None:
                connected["protocol"] = notice.protocol
            return Notification(CONNECTED, connected)
        case Shutdown(reason=reason, grace=grace, then=then):
            return Notification(SHUTDOWN, {"reason": reason, "grace": grace, "then": then})
        case RunOutput():
            raise TypeError("process.output is encoded by codec.encode_output")
        case _:  # a Claude session's notice
            return Notification(notice.method, session_params(notice))


def run_info_object(info: RunInfo) -> dict[str, JSON]:
    """A run's status as `status {run}` and `list` send it."""
    if info.wire is not None:
        return dict(info.wire)
    fields: dict[str, JSON] = {"run": info.run}
    if info.durable:
        fields["durable"] = True
    if info.owner is not None:
        fields["owner"] = info.owner
    fields.update(
        {
            "state": info.state,
            "pid": info.pid,
            "pgid": info.pgid,
            "argv": list(info.argv),
            "elapsed": info.elapsed,
            "stdout_bytes": info.stdout_bytes,
            "stderr_bytes": info.stderr_bytes,
            "last_seq": info.last_seq,
        }
    )
    if info.started is not None:
        fields["started"] = info.started
    if info.here is not None:
        fields["here"] = info.here
    if info.completion is not None:
        fields.update(completion_fields(info.completion))
    if info.journal is not None:
        fields["journal"] = dict(info.journal)
    if info.claude is not None:
        fields["claude"] = dict(info.claude)
    return fields


def list_key(info: RunInfo) -> tuple[float, str]:
    """Where a run stands in `list`: by start time (none: first), then id."""
    return (info.started or 0.0, info.run)


def list_page(runs: Iterable[RunInfo], after: str | None, limit: int | None) -> RunList:
    """`list`'s page of `runs`: in ``list_key`` order, those after the cursor `after`, as many
    as `limit` and ``LIST_PAGE_BYTES`` of JSON allow (one at least, however long), and the
    cursor of the next page when some are left."""
    ordered = sorted(runs, key=list_key)
    start = (
        0 if after is None else bisect.bisect_right(ordered, parse_list_cursor(after), key=list_key)
    )
    page: list[RunInfo] = []
    used = 0
    for info in ordered[start:]:
        size = len(orjson.dumps(run_info_object(info))) + 1  # and its comma
        if page and ((limit is not None and len(page) >= limit) or used + size > LIST_PAGE_BYTES):
            break
        page.append(info)
        used += size
    if start + len(page) == len(ordered):
        return RunList(tuple(page))
    last = page[-1]
    return RunList(tuple(page), list_cursor(last.started, last.run))


def result_object(result: Result) -> dict[str, JSON]:
    """The `result` member of a reply."""
    match result:
        case Started(run=run, pid=pid, pgid=pgid, durable=durable, session=session):
            started: dict[str, JSON] = {"status": "started", "run": run, "pid": pid, "pgid": pgid}
            if durable:
                started["durable"] = True
            if session:
                started["session"] = True
            return started
        case Queued(run=run, claude_session=key):
            return {"status": "queued", "run": run, "claude_session": key}
        case ControlDone(status=status, run=run, rung=rung):
            done: dict[str, JSON] = {"status": status, "run": run}
            if rung is not None:
                done["rung"] = rung
            return done
        case SignalSent(run=run, signal=sig):
            return {"status": "signalled", "run": run, "signal": sig}
        case StdinWritten(run=run, bytes=size, eof=eof):
            return {"status": "written", "run": run, "bytes": size, "eof": eof}
        case RunInfo():
            return run_info_object(result)
        case RunList(runs=runs, next=after):
            listed: dict[str, JSON] = {"runs": [run_info_object(info) for info in runs]}
            if after is not None:
                listed["next"] = after
            return listed
        case DaemonInfo():
            info: dict[str, JSON] = {
                "server": result.server,
                "version": result.version,
                "instance": result.instance,
                "uptime": result.uptime,
                "connections": result.connections,
                "live_runs": result.live_runs,
                "runs_started": result.runs_started,
                "durable_runs": result.durable_runs,
                "live_durable_runs": result.live_durable_runs,
                "draining": result.draining,
            }
            if result.state_dir is not None:
                info["state_dir"] = result.state_dir
            return info
        case Attached(run=run, from_seq=from_seq, last_seq=last_seq, state=state):
            journal: JSON = None if result.journal is None else dict(result.journal)
            attached: dict[str, JSON] = {
                "status": "attached",
                "run": run,
                "from_seq": from_seq,
                "last_seq": last_seq,
                "state": state,
                "journal": journal,
            }
            if result.claude is not None:
                attached["claude"] = dict(result.claude)
            return attached
        case Detached(run=run, last_sent_seq=sent):
            return {"status": "detached", "run": run, "last_sent_seq": sent}
        case ClaudeSent(message=message, turn=turn, disposition=disposition):
            return {"message": message, "turn": turn, "disposition": disposition}
        case ClaudeInterrupted(turn=turn):
            return {"interrupted": True, "turn": turn}
        case ClaudeAnswered(response=response):
            return {"response": response}
        case ClaudeDecided():
            return {"decided": True}
        case ClaudeClosed(run=run, completion=completion):
            closed = {"run": run, **_completion_params(run, 0, completion)}
            del closed["seq"]
            return closed
