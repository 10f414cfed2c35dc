"""The cc-executor client library: trio-native, over trio-websocket.

    async with open_connection("ws://127.0.0.1:8003/") as conn:
        run = await conn.execute(["seq", "1", "3"])
        async for event in run:
            ...

A live Claude Code session: `session = await start_claude_session(conn)`, then
`await session.send("...")` and `async for event in session` (client/claude.py).

See docs/client.md. `connection.py` explains the reader and reconnecting, `run.py`
back-pressure.

The names below are loaded on first use (PEP 562): `ccx run` loads the parts it uses, not the
Claude session console.
"""

from typing import TYPE_CHECKING

from cc_executor.protocol.lazy import lazy_exports

if TYPE_CHECKING:
    from cc_executor.executor.client.claude import (
        ClaudeSession,
        SessionEvent,
        attach_claude_session,
        resume_claude_session,
        start_claude_session,
    )
    from cc_executor.executor.client.config import (
        DEFAULT_URL,
        ClientConfig,
    )
    from cc_executor.executor.client.connection import (
        Connection,
        open_connection,
    )
    from cc_executor.executor.client.errors import (
        AlreadyDecidedError,
        ClientError,
        ConnectionLost,
        ControlTimeoutError,
        DaemonUnavailable,
        HandshakeRefused,
        InternalServerError,
        InvalidParamsError,
        InvalidRequestError,
        InvalidStateError,
        InvalidUrl,
        JournalUnreadable,
        LimitExceededError,
        MethodNotFoundError,
        NotADaemon,
        PolicyRefusedError,
        ProtocolViolation,
        RangeRemovedError,
        RunNotFoundError,
        ServerError,
        ShuttingDownError,
        SpawnFailedError,
    )
    from cc_executor.executor.client.events import (
        ClaudeMessageTaken,
        ClaudePermissionDeadline,
        ClaudePermissionDecided,
        ClaudePermissionRequest,
        ClaudeStateChanged,
        ClaudeTurnEnded,
        ClaudeTurnStarted,
        Completed,
        DaemonStatus,
        Gap,
        Greeting,
        JournalError,
        Output,
        Paused,
        Resumed,
        RunEvent,
        RunStatus,
        SessionNotice,
        ShutdownNotice,
        exit_status,
    )
    from cc_executor.executor.client.run import (
        Run,
    )

_HOME: dict[str, str] = {
    "AlreadyDecidedError": "cc_executor.executor.client.errors",
    "ClaudeMessageTaken": "cc_executor.executor.client.events",
    "ClaudePermissionDeadline": "cc_executor.executor.client.events",
    "ClaudePermissionDecided": "cc_executor.executor.client.events",
    "ClaudePermissionRequest": "cc_executor.executor.client.events",
    "ClaudeSession": "cc_executor.executor.client.claude",
    "ClaudeStateChanged": "cc_executor.executor.client.events",
    "ClaudeTurnEnded": "cc_executor.executor.client.events",
    "ClaudeTurnStarted": "cc_executor.executor.client.events",
    "ClientConfig": "cc_executor.executor.client.config",
    "ClientError": "cc_executor.executor.client.errors",
    "Completed": "cc_executor.executor.client.events",
    "Connection": "cc_executor.executor.client.connection",
    "ConnectionLost": "cc_executor.executor.client.errors",
    "ControlTimeoutError": "cc_executor.executor.client.errors",
    "DEFAULT_URL": "cc_executor.executor.client.config",
    "DaemonStatus": "cc_executor.executor.client.events",
    "DaemonUnavailable": "cc_executor.executor.client.errors",
    "Gap": "cc_executor.executor.client.events",
    "Greeting": "cc_executor.executor.client.events",
    "HandshakeRefused": "cc_executor.executor.client.errors",
    "InternalServerError": "cc_executor.executor.client.errors",
    "InvalidParamsError": "cc_executor.executor.client.errors",
    "InvalidRequestError": "cc_executor.executor.client.errors",
    "InvalidStateError": "cc_executor.executor.client.errors",
    "InvalidUrl": "cc_executor.executor.client.errors",
    "JournalError": "cc_executor.executor.client.events",
    "JournalUnreadable": "cc_executor.executor.client.errors",
    "LimitExceededError": "cc_executor.executor.client.errors",
    "MethodNotFoundError": "cc_executor.executor.client.errors",
    "NotADaemon": "cc_executor.executor.client.errors",
    "Output": "cc_executor.executor.client.events",
    "Paused": "cc_executor.executor.client.events",
    "PolicyRefusedError": "cc_executor.executor.client.errors",
    "ProtocolViolation": "cc_executor.executor.client.errors",
    "RangeRemovedError": "cc_executor.executor.client.errors",
    "Resumed": "cc_executor.executor.client.events",
    "Run": "cc_executor.executor.client.run",
    "RunEvent": "cc_executor.executor.client.events",
    "RunNotFoundError": "cc_executor.executor.client.errors",
    "RunStatus": "cc_executor.executor.client.events",
    "ServerError": "cc_executor.executor.client.errors",
    "SessionEvent": "cc_executor.executor.client.claude",
    "SessionNotice": "cc_executor.executor.client.events",
    "ShutdownNotice": "cc_executor.executor.client.events",
    "ShuttingDownError": "cc_executor.executor.client.errors",
    "SpawnFailedError": "cc_executor.executor.client.errors",
    "attach_claude_session": "cc_executor.executor.client.claude",
    "exit_status": "cc_executor.executor.client.events",
    "open_connection": "cc_executor.executor.client.connection",
    "resume_claude_session": "cc_executor.executor.client.claude",
    "start_claude_session": "cc_executor.executor.client.claude",
}

__all__ = [
    "DEFAULT_URL",
    "AlreadyDecidedError",
    "ClaudeMessageTaken",
    "ClaudePermissionDeadline",
    "ClaudePermissionDecided",
    "ClaudePermissionRequest",
    "ClaudeSession",
    "ClaudeStateChanged",
    "ClaudeTurnEnded",
    "ClaudeTurnStarted",
    "ClientConfig",
    "ClientError",
    "Completed",
    "Connection",
    "ConnectionLost",
    "ControlTimeoutError",
    "DaemonStatus",
    "DaemonUnavailable",
    "Gap",
    "Greeting",
    "HandshakeRefused",
    "InternalServerError",
    "InvalidParamsError",
    "InvalidRequestError",
    "InvalidStateError",
    "InvalidUrl",
    "JournalError",
    "JournalUnreadable",
    "LimitExceededError",
    "MethodNotFoundError",
    "NotADaemon",
    "Output",
    "Paused",
    "PolicyRefusedError",
    "ProtocolViolation",
    "RangeRemovedError",
    "Resumed",
    "Run",
    "RunEvent",
    "RunNotFoundError",
    "RunStatus",
    "ServerError",
    "SessionEvent",
    "SessionNotice",
    "ShutdownNotice",
    "ShuttingDownError",
    "SpawnFailedError",
    "attach_claude_session",
    "exit_status",
    "open_connection",
    "resume_claude_session",
    "start_claude_session",
]


__getattr__, __dir__ = lazy_exports(globals(), _HOME)
