"""What a runner tells its pump, and what the pump hands to its sink (numbered)."""

from __future__ import annotations

import enum
from typing import Literal

import attrs

from cc_executor.supervision.outcome import Outcome

Stream = Literal["stdout", "stderr"]


class RunState(enum.Enum):
    """Lifecycle of a run: RUNNING <-> PAUSED, then ENDING (being stopped/drained), COMPLETED."""

    RUNNING = "running"
    PAUSED = "paused"
    ENDING = "ending"
    COMPLETED = "completed"


@attrs.frozen
class OutputChunk:
    """Bytes read from one of the child's pipes, exactly as read."""

    stream: Stream
    data: bytes


@attrs.frozen
class StateChanged:
    """The run's state changed, after the change took effect on every process."""

    state: RunState


@attrs.frozen
class Completed:
    """The run is over; always the last event of a run."""

    outcome: Outcome
    stdout_bytes: int
    stderr_bytes: int
    duration: float


RunEvent = OutputChunk | StateChanged | Completed


@attrs.frozen
class Output:
    """A framed piece of one stream: whole lines where possible."""

    seq: int
    stream: Stream
    data: bytes


@attrs.frozen
class StateEvent:
    """A numbered StateChanged."""

    seq: int
    state: RunState


@attrs.frozen
class CompletedEvent:
    """A numbered Completed."""

    seq: int
    completed: Completed


@attrs.frozen
class Note:
    """A numbered event the run's owner posted (a Claude session's notice, say): `name` says
    what it is, `data` is its body, opaque bytes to supervision (the executor's JSON)."""

    seq: int
    name: str
    data: bytes


SequencedEvent = Output | StateEvent | CompletedEvent | Note
