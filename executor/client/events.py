"""What a run's stream yields, and what `status`/`list` return: the protocol's own classes.

The client decodes the daemon's frames into the very classes the daemon encodes them from
(protocol/notices.py, protocol/status.py), so the two ends cannot disagree about a field.
The names here are the client's words for them; nothing here does I/O.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, TypeAlias

from cc_executor.protocol.lazy import lazy_exports
from cc_executor.protocol.notices import Connected as Greeting
from cc_executor.protocol.notices import RunCompleted as Completed
from cc_executor.protocol.notices import RunGap as Gap
from cc_executor.protocol.notices import RunJournalError as JournalError
from cc_executor.protocol.notices import RunOutput as Output
from cc_executor.protocol.notices import RunPaused as Paused
from cc_executor.protocol.notices import RunResumed as Resumed
from cc_executor.protocol.notices import Shutdown as ShutdownNotice
from cc_executor.protocol.status import DaemonInfo as DaemonStatus
from cc_executor.protocol.status import RunInfo as RunStatus

if TYPE_CHECKING:
    from cc_executor.protocol.claude.notices import (
        ClaudeMessageTaken,
        ClaudePermissionDeadline,
        ClaudePermissionDecided,
        ClaudePermissionRequest,
        ClaudeStateChanged,
        ClaudeTurnEnded,
        ClaudeTurnStarted,
        SessionNotice,
    )

__all__ = [
    "ClaudeMessageTaken",
    "ClaudePermissionDeadline",
    "ClaudePermissionDecided",
    "ClaudePermissionRequest",
    "ClaudeStateChanged",
    "ClaudeTurnEnded",
    "ClaudeTurnStarted",
    "Completed",
    "DaemonStatus",
    "Gap",
    "Greeting",
    "JournalError",
    "Output",
    "Paused",
    "Resumed",
    "RunEvent",
    "RunStatus",
    "SessionNotice",
    "ShutdownNotice",
    "exit_status",
]

# A Claude session's own notifications (turns, permissions, state) are run events too: they
# are sequenced with the run's output (protocol/claude/notices.py). Their classes load on first
# use (PEP 562), as a Claude session's client meets them; so the alias is written as a string.
RunEvent: TypeAlias = "Output | Paused | Resumed | Gap | JournalError | SessionNotice | Completed"
_CLAUDE_NOTICES = "cc_executor.protocol.claude.notices"
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        name: _CLAUDE_NOTICES
        for name in (
            "ClaudeMessageTaken",
            "ClaudePermissionDeadline",
            "ClaudePermissionDecided",
            "ClaudePermissionRequest",
            "ClaudeStateChanged",
            "ClaudeTurnEnded",
            "ClaudeTurnStarted",
            "SessionNotice",
        )
    },
)


def exit_status(completed: Completed) -> int:
    """The shell's view of how a run ended: its exit code, 128+N for a signal, 1 otherwise."""
    if completed.signal is not None:
        try:
            return 128 + int(signal.Signals[completed.signal])
        except KeyError:
            pass
    code = completed.exit_code
    if code is not None and code < 0:
        return 128 - code
    return code if code is not None else 1
