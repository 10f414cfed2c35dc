"""The cc-executor client library: trio-native, over trio-websocket.

    async with open_connection("ws://127.0.0.1:8003/") as conn:
        run = await conn.execute(["seq", "1", "3"])
        async for event in run:
            ...

A live Claude Code session: `session = await start_claude_session(conn)`, then
`await session.send("...")` and `async for event in session` (client/claude.py).

See docs/client.md. `connection.py` explains the reader and reconnecting, `run.py`
back-pressure.
"""

from cc_executor.executor.client.claude import (
    ClaudeSession,
    SessionEvent,
    attach_claude_session,
    resume_claude_session,
    start_claude_session,
)
from cc_executor.executor.client.config import DEFAULT_URL, ClientConfig
from cc_executor.executor.client.connection import Connection, open_connection
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
from cc_executor.executor.client.run import Run

__all__ = [
    "DEFAULT_URL",
    "AlreadyDecidedError",
    "ClaudeMessageTaken",
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
