"""What the server answers, as typed values: the result of each method.

Each class is the `result` of one reply (server_codec.py owns the JSON form). Errors are not
here: they are `JsonRpcError`s (errors.py), each carrying its error object. `status` and
`list`'s own (`RunInfo`, `DaemonInfo`) live in status.py, which a client listing runs loads
without the others.
"""

from collections.abc import Mapping
from typing import Literal, TypeAlias

import attrs

from cc_executor.protocol.messages import JSON
from cc_executor.protocol.notices import Completion
from cc_executor.protocol.status import DaemonInfo as DaemonInfo
from cc_executor.protocol.status import RunInfo as RunInfo


@attrs.frozen
class Started:
    """`execute` and `claude`: the run is spawned; its events follow this reply."""

    run: str
    pid: int
    pgid: int
    durable: bool = False
    session: bool = False  # a live Claude session (`claude {session: true}`)


@attrs.frozen
class Queued:
    """`claude`: the Claude session is busy; the run starts once it is free."""

    run: str
    claude_session: str


@attrs.frozen
class ControlDone:
    """`control`: the effect holds (every process stopped, continued, or gone)."""

    status: Literal["paused", "resumed", "canceled"]
    run: str
    rung: str | None = None  # the cancel ladder's rung that ended the run (CANCEL only)


@attrs.frozen
class SignalSent:
    """`signal`: delivered to the run's group and every process that left it."""

    run: str
    signal: str


@attrs.frozen
class StdinWritten:
    """`stdin`: the bytes are in the child's pipe (and it is closed, with `eof`)."""

    run: str
    bytes: int
    eof: bool


@attrs.frozen
class RunList:
    """`list`: runs the caller may see; `next`, when more follow, the cursor to ask after."""

    runs: tuple[RunInfo, ...]
    next: str | None = None


@attrs.frozen
class Attached:
    """`attach`: events after `from_seq` follow this reply, then the live stream.

    `claude` is a live Claude session's snapshot (state, turn, the permission requests
    pending now — also those posted before `from_seq`, which the replay does not repeat).
    """

    run: str
    from_seq: int
    last_seq: int
    state: str
    journal: Mapping[str, JSON] | None
    claude: Mapping[str, JSON] | None = None


@attrs.frozen
class Detached:
    """`detach`: no event of the run follows this reply."""

    run: str
    last_sent_seq: int


@attrs.frozen
class ClaudeSent:
    """`claude.send`: the message is in the CLI's stdin; it starts turn `turn` ("started")
    or waits for the running turn `turn` to take it or to end ("queued")."""

    message: str
    turn: int
    disposition: Literal["started", "queued"]


@attrs.frozen
class ClaudeInterrupted:
    """`claude.interrupt`: the CLI acknowledged the interrupt of turn `turn`."""

    turn: int


@attrs.frozen
class ClaudeAnswered:
    """`claude.set_model`, `claude.set_permission_mode`: the CLI's response object."""

    response: JSON


@attrs.frozen
class ClaudeDecided:
    """`claude.permission`: this answer decided the request (it is on its way to the CLI)."""


@attrs.frozen
class ClaudeClosed:
    """`claude.close`: the session run is over; how it ended."""

    run: str
    completion: Completion


Result: TypeAlias = (
    Started
    | Queued
    | ControlDone
    | SignalSent
    | StdinWritten
    | RunInfo
    | RunList
    | DaemonInfo
    | Attached
    | Detached
    | ClaudeSent
    | ClaudeInterrupted
    | ClaudeAnswered
    | ClaudeDecided
    | ClaudeClosed
)
