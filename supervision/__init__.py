"""Process supervision: spawn, contain, control, reap and stream one process tree per run.

Knows nothing of JSON or WebSockets.  The daemon calls enable_subreaper() and runs
run_reaper(registry) for its lifetime; each run is one run_process task plus one OutputPump.
"""

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.errors import (
    ControlTimeout,
    DuplicateRun,
    InvalidTransition,
    SinkClosed,
    SpawnError,
    StdinClosed,
    StdinFull,
    SupervisionError,
)
from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Note,
    Output,
    OutputChunk,
    RunEvent,
    RunState,
    SequencedEvent,
    StateChanged,
    StateEvent,
)
from cc_executor.supervision.outcome import (
    Cancelled,
    Exited,
    Lost,
    Outcome,
    Rung,
    Signalled,
    SpawnFailed,
    TimedOut,
)
from cc_executor.supervision.pump import OutputPump
from cc_executor.supervision.reaper import (
    ReaperAlreadyRunning,
    enable_subreaper,
    reap_orphans,
    run_reaper,
)
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.run import Run
from cc_executor.supervision.runner import run_process
from cc_executor.supervision.spawn import ResourceLimits, SpawnSpec
from cc_executor.supervision.tree import run_members

__all__ = [
    "Cancelled",
    "Completed",
    "CompletedEvent",
    "ControlTimeout",
    "DuplicateRun",
    "Exited",
    "InvalidTransition",
    "Lost",
    "Note",
    "Outcome",
    "Output",
    "OutputChunk",
    "OutputPump",
    "ReaperAlreadyRunning",
    "ResourceLimits",
    "Run",
    "RunEvent",
    "RunRegistry",
    "RunState",
    "Rung",
    "SequencedEvent",
    "Signalled",
    "SinkClosed",
    "SpawnError",
    "SpawnFailed",
    "SpawnSpec",
    "StateChanged",
    "StateEvent",
    "StdinClosed",
    "StdinFull",
    "SupervisionConfig",
    "SupervisionError",
    "TimedOut",
    "enable_subreaper",
    "reap_orphans",
    "run_members",
    "run_process",
    "run_reaper",
]
