"""The method table: the one place that says which methods and notifications exist (the
notifications' names are defined in names.py, and exported from here too)."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, TypeAlias

from cc_executor.protocol.claude import (
    SESSION_NOTICES,
    ClaudeCloseParams,
    ClaudeInterruptParams,
    ClaudeParams,
    ClaudePermissionParams,
    ClaudeResumeParams,
    ClaudeSendParams,
    ClaudeSetModelParams,
    ClaudeSetPermissionModeParams,
)
from cc_executor.protocol.names import CONNECTED as CONNECTED
from cc_executor.protocol.names import PROCESS_CANCELED as PROCESS_CANCELED
from cc_executor.protocol.names import PROCESS_COMPLETED as PROCESS_COMPLETED
from cc_executor.protocol.names import PROCESS_GAP as PROCESS_GAP
from cc_executor.protocol.names import PROCESS_JOURNAL_ERROR as PROCESS_JOURNAL_ERROR
from cc_executor.protocol.names import PROCESS_OUTPUT as PROCESS_OUTPUT
from cc_executor.protocol.names import PROCESS_PAUSED as PROCESS_PAUSED
from cc_executor.protocol.names import PROCESS_RESUMED as PROCESS_RESUMED
from cc_executor.protocol.names import PROCESS_STARTED as PROCESS_STARTED
from cc_executor.protocol.names import SHUTDOWN as SHUTDOWN
from cc_executor.protocol.params import (
    AttachParams,
    ControlParams,
    DetachParams,
    ExecuteParams,
    ListParams,
    SignalParams,
    StatusParams,
    StdinParams,
)

Params: TypeAlias = (
    ExecuteParams
    | ControlParams
    | SignalParams
    | StdinParams
    | StatusParams
    | ListParams
    | AttachParams
    | DetachParams
    | ClaudeParams
    | ClaudeSendParams
    | ClaudeInterruptParams
    | ClaudeSetModelParams
    | ClaudeSetPermissionModeParams
    | ClaudePermissionParams
    | ClaudeCloseParams
    | ClaudeResumeParams
)

# Client -> server: method name -> the class its params structure into.
METHODS: Final[Mapping[str, type[Params]]] = MappingProxyType(
    {
        "execute": ExecuteParams,
        "control": ControlParams,
        "signal": SignalParams,
        "stdin": StdinParams,
        "status": StatusParams,
        "list": ListParams,
        "attach": AttachParams,
        "detach": DetachParams,
        "claude": ClaudeParams,
        # A live Claude session run (docs/claude.md, "Sessions").
        "claude.send": ClaudeSendParams,
        "claude.interrupt": ClaudeInterruptParams,
        "claude.set_model": ClaudeSetModelParams,
        "claude.set_permission_mode": ClaudeSetPermissionModeParams,
        "claude.permission": ClaudePermissionParams,
        "claude.close": ClaudeCloseParams,
        "claude.resume": ClaudeResumeParams,
    }
)

# The inverse, so that a client can send a params object without restating its method name.
METHOD_OF: Final[Mapping[type[Params], str]] = MappingProxyType(
    {cls: name for name, cls in METHODS.items()}
)

# The run-targeted methods of a Claude session run (answered by the run's queue, like stdin).
SESSION_RUN_METHODS: Final = frozenset(
    {
        "claude.send",
        "claude.interrupt",
        "claude.set_model",
        "claude.set_permission_mode",
        "claude.permission",
        "claude.close",
    }
)

# The methods that target one run (`run`), answered in order per run, not by the reader.
RUN_METHODS: Final = frozenset({"control", "signal", "stdin", *SESSION_RUN_METHODS})

# Server -> client notifications: their names are names.py's (imported above).

# Events of one run: they carry `run` and `seq` (contiguous from 1 within the run), and
# `process.completed` is the last of them.  `process.started` announces the run (it follows
# the execute reply, before any event) and is not sequenced: a client attaching from a seq
# needs no announcement replayed.  A Claude session's notifications (claude.turn_started,
# claude.permission_request, ...) are run events too.
RUN_EVENTS: Final = frozenset(
    {PROCESS_OUTPUT, PROCESS_PAUSED, PROCESS_RESUMED, PROCESS_COMPLETED, *SESSION_NOTICES}
)

# The `type` of a process.output notification.
OUTPUT_STREAMS: Final = frozenset({"stdout", "stderr"})
