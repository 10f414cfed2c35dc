"""The wire form of what the server sends: typed notices and results to JSON and back.

Encoding is the daemon's half (`notice_message`, `result_object`); decoding is the client's
(`decode_notice`, `decode_*`).  Field names and order are the original CC-Executor's where it
had the message (`status`, `pid`, `pgid`, `exit_code`, `execution_time`, ...); optional fields
are left out rather than sent as null, except `exit_code` and `signal`, which a completion
always carries.  A decoder raises `ValueError` (or `KeyError`/`TypeError`) for a frame that
does not fit: the client turns that into its protocol-violation error.
"""

import base64
from collections.abc import Mapping
from typing import Any, cast

from cc_executor.protocol.claude.notices import (
    SESSION_NOTICES,
    decode_session_notice,
    session_params,
)
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

# -- encoding ----------------------------------------------------------------------------


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
        case RunList(runs=runs):
            return {"runs": [run_info_object(info) for info in runs]}
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


# -- decoding (the client's half) ----------------------------------------------------------


def decode_completion(params: Mapping[str, Any]) -> Completion:
    """A completion from `process.completed` params or a completed run's status."""
    claude = params.get("claude")
    return Completion(
        status=params["status"],
        outcome=params["outcome"],
        exit_code=params.get("exit_code"),
        signal=params.get("signal"),
        reason=params.get("reason"),
        rung=params.get("rung"),
        timeout=params.get("timeout"),
        pid=params.get("pid"),
        pgid=params.get("pgid"),
        execution_time=params.get("execution_time"),
        stdout_bytes=int(params.get("stdout_bytes", 0)),
        stderr_bytes=int(params.get("stderr_bytes", 0)),
        claude=dict(claude) if isinstance(claude, dict) else None,
    )


def decode_output(params: Mapping[str, Any]) -> RunOutput:
    """`process.output` params as `RunOutput` (base64 data decoded, strictly)."""
    data = params["data"]
    if not isinstance(data, str):
        raise TypeError("process.output data is not a string")
    raw = (
        base64.b64decode(data, validate=True)
        if params.get("encoding") == "base64"
        else data.encode("utf-8")
    )
    stream = params["type"]
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"unknown stream {stream!r}")
    return RunOutput(params["run"], int(params["seq"]), stream, raw)


def _ids(params: Mapping[str, Any]) -> tuple[int | None, int | None]:
    return params.get("pid"), params.get("pgid")


_GAP_KEYS = frozenset({"run", "seq", "reason"})


def decode_notice(method: str, params: Mapping[str, Any]) -> Notice | None:
    """A notification as the notice it encodes; None for a method this version does not know
    (and for `claude.event`, whose events the client parses from stdout itself)."""
    match method:
        case "process.output":
            return decode_output(params)
        case "process.paused":
            return RunPaused(
                params["run"], int(params["seq"]), params.get("pid"), params.get("pgid")
            )
        case "process.resumed":
            return RunResumed(
                params["run"], int(params["seq"]), params.get("pid"), params.get("pgid")
            )
        case "process.completed":
            return RunCompleted(params["run"], int(params["seq"]), decode_completion(params))
        case "process.gap":
            details = {k: cast(JSON, v) for k, v in params.items() if k not in _GAP_KEYS}
            return RunGap(params["run"], int(params["seq"]), str(params.get("reason", "")), details)
        case "process.journal_error":
            return RunJournalError(
                params["run"], int(params["seq"]), str(params["reason"]), str(params["policy"])
            )
        case "process.started":
            return RunStarted(
                params["run"],
                int(params["pid"]),
                int(params["pgid"]),
                tuple(params.get("argv", ())),
                bool(params.get("durable", False)),
            )
        case "connected":
            return Connected(
                session_id=str(params.get("session_id", "")),
                version=str(params.get("version", "")),
                server=str(params.get("server", "")),
                capabilities=tuple(params.get("capabilities", ())),
                limits=dict(params.get("limits", {})),
                protocol=params.get("protocol"),
            )
        case "shutdown":
            return Shutdown(
                str(params.get("reason", "")),
                float(params.get("grace", 0.0)),
                str(params.get("then", "")),
            )
    if method in SESSION_NOTICES:
        return decode_session_notice(method, params)
    return None


def decode_run_info(raw: Mapping[str, Any]) -> RunInfo:
    """A `status {run}` result or an element of `list`."""
    journal = raw.get("journal")
    claude = raw.get("claude")
    return RunInfo(
        run=raw["run"],
        state=raw["state"],
        pid=raw.get("pid"),
        pgid=raw.get("pgid"),
        argv=tuple(raw.get("argv", ())),
        elapsed=float(raw.get("elapsed", 0.0)),
        stdout_bytes=int(raw.get("stdout_bytes", 0)),
        stderr_bytes=int(raw.get("stderr_bytes", 0)),
        last_seq=int(raw.get("last_seq", 0)),
        started=raw.get("started"),
        durable=bool(raw.get("durable", False)),
        owner=raw.get("owner"),
        here=raw.get("here"),
        completion=decode_completion(raw) if "outcome" in raw else None,
        journal=dict(journal) if isinstance(journal, dict) else None,
        claude=dict(claude) if isinstance(claude, dict) else None,
    )


def decode_daemon_info(raw: Mapping[str, Any]) -> DaemonInfo:
    """A `status {}` result."""
    return DaemonInfo(
        server=str(raw.get("server", "")),
        version=str(raw.get("version", "")),
        instance=str(raw.get("instance", "")),
        uptime=float(raw.get("uptime", 0.0)),
        connections=int(raw.get("connections", 0)),
        live_runs=int(raw.get("live_runs", 0)),
        runs_started=int(raw.get("runs_started", 0)),
        durable_runs=int(raw.get("durable_runs", 0)),
        live_durable_runs=int(raw.get("live_durable_runs", 0)),
        draining=bool(raw.get("draining", False)),
        state_dir=raw.get("state_dir"),
    )
