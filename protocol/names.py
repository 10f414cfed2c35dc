"""The names of the server's notifications: plain strings, in a module of their own.

methods.py, the method table, re-exports them; they live here so that what only decodes the
server's frames (server_decoding.py, and so ccx) need not load every params class the table
names, nor a Claude session's notice classes (protocol/claude/notices.py) to know their names.
"""

from typing import Final

# Server -> client notifications.
CONNECTED: Final = "connected"
PROCESS_STARTED: Final = "process.started"
PROCESS_OUTPUT: Final = "process.output"
PROCESS_PAUSED: Final = "process.paused"
PROCESS_RESUMED: Final = "process.resumed"
PROCESS_COMPLETED: Final = "process.completed"
# The original CC-Executor's word for a cancelled run; only its profile sends it (profile.py).
PROCESS_CANCELED: Final = "process.canceled"
# The daemon is draining: live runs are cancelled after a grace period.
SHUTDOWN: Final = "shutdown"
# A durable run's journal lacks events from `seq` on (its quota was reached, a write failed,
# or the file is damaged: `reason` says which); the next event of the run carries a later seq.
# Not itself sequenced.
PROCESS_GAP: Final = "process.gap"
# A durable run's journal could not record event `seq` (a full or failing disk); `policy` says
# what follows ("block": the run waits for the disk; "cancel": the run is ended).  Not sequenced.
PROCESS_JOURNAL_ERROR: Final = "process.journal_error"

# A live Claude session's notifications, sequenced like a run's output (their classes:
# protocol/claude/notices.py).
CLAUDE_TURN_STARTED: Final = "claude.turn_started"
CLAUDE_MESSAGE: Final = "claude.message"
CLAUDE_TURN_ENDED: Final = "claude.turn_ended"
CLAUDE_PERMISSION_REQUEST: Final = "claude.permission_request"
CLAUDE_PERMISSION_DECIDED: Final = "claude.permission_decided"
CLAUDE_PERMISSION_DEADLINE: Final = "claude.permission_deadline"
CLAUDE_STATE: Final = "claude.state"
SESSION_NOTICE_METHODS: Final = frozenset(
    {
        CLAUDE_TURN_STARTED,
        CLAUDE_MESSAGE,
        CLAUDE_TURN_ENDED,
        CLAUDE_PERMISSION_REQUEST,
        CLAUDE_PERMISSION_DECIDED,
        CLAUDE_PERMISSION_DEADLINE,
        CLAUDE_STATE,
    }
)
