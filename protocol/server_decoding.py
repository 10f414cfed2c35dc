"""What the server sends, decoded: the client's half of the wire form server_codec.py encodes.

A decoder raises `ValueError` (or `KeyError`/`TypeError`) for a frame that does not fit: the
client turns that into its protocol-violation error. It builds the same classes the daemon
encodes from, and loads only those: the notices (notices.py) and the status results
(status.py), not every reply's result class; a Claude session's notice classes load with the
first of its notifications.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, cast

from cc_executor.protocol.messages import JSON
from cc_executor.protocol.names import SESSION_NOTICE_METHODS
from cc_executor.protocol.notices import (
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
from cc_executor.protocol.status import DaemonInfo, RunInfo


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
    if method in SESSION_NOTICE_METHODS:
        from cc_executor.protocol.claude.notices import decode_session_notice  # Claude's only

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
