"""What the server sends on its own: notifications and the run events, as typed values.

Theory of operation
-------------------
Every notification the daemon sends is one of these frozen classes, handed to
`ServerConnection.send`, which checks the connection's ordering rules and encodes it
(server_codec.py owns the JSON form, field for field the original CC-Executor's where it had
one).  The client library decodes frames back into the same classes, so the two ends cannot
disagree about a field.

Run events (`RunOutput`, `RunPaused`, `RunResumed`, `RunCompleted`, and a Claude session's
notices, protocol/claude/notices.py) carry `run` and `seq`, contiguous from 1 within a run;
`RunCompleted` is the last of them.  `RunStarted`, `RunGap`,
`RunJournalError` and `ClaudeNotice` belong to a run but are not sequenced: a gap names the
first seq it lost, a journal error the seq it could not record, and Claude's typed events are
derived from the run's stdout, which is sequenced already.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, TypeAlias

import attrs

from cc_executor.protocol.messages import JSON

if TYPE_CHECKING:  # a client that never sees a Claude run never loads its event classes
    from cc_executor.protocol.claude.events import ClaudeEvent
    from cc_executor.protocol.claude.notices import SessionNotice

Stream: TypeAlias = Literal["stdout", "stderr"]
Status: TypeAlias = Literal["completed", "failed", "canceled"]
OutcomeName: TypeAlias = Literal[
    "exited", "signalled", "cancelled", "timed_out", "spawn_failed", "lost", "failed"
]


@attrs.frozen
class Completion:
    """How a run ended, as `process.completed` and a completed run's status describe it.

    `status` is the original CC-Executor's word; `outcome` says why the run ended: `exited`,
    `signalled`, `cancelled`, `timed_out`, `spawn_failed`, `lost`, or `failed` (the daemon
    itself failed the run: `reason` starts with "internal error"). `exit_code` is negative for a
    signal, as Python's returncode (and the original) report it.
    """

    status: Status
    outcome: OutcomeName
    exit_code: int | None = None
    signal: str | None = None
    reason: str | None = None
    rung: str | None = None
    timeout: Literal["idle", "absolute"] | None = None
    pid: int | None = None
    pgid: int | None = None
    execution_time: float | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    # A Claude run's summary (result, cost, usage, turns, session id); None for other runs.
    claude: Mapping[str, JSON] | None = None


@attrs.frozen
class Connected:
    """`connected`: the first frame of every JSON-RPC connection.

    `protocol` names the connection's compatibility profile where it says so (profile.py:
    the original's, on `/ws/mcp`); None leaves it out.
    """

    session_id: str
    version: str
    server: str
    capabilities: tuple[str, ...]
    limits: Mapping[str, JSON]
    protocol: str | None = None


@attrs.frozen
class Shutdown:
    """`shutdown`: the daemon is draining; live runs are cancelled after `grace` seconds."""

    reason: str
    grace: float
    then: str


@attrs.frozen
class RunStarted:
    """`process.started`: the run exists; it follows the reply to the request that started it."""

    run: str
    pid: int
    pgid: int
    argv: tuple[str, ...]
    durable: bool = False


@attrs.frozen
class RunOutput:
    """`process.output`: a chunk of one stream, exactly the bytes the child wrote."""

    run: str
    seq: int
    stream: Stream
    data: bytes


@attrs.frozen
class RunPaused:
    """`process.paused`: every process of the run is stopped."""

    run: str
    seq: int
    pid: int | None = None
    pgid: int | None = None


@attrs.frozen
class RunResumed:
    """`process.resumed`: no process of the run is stopped any more."""

    run: str
    seq: int
    pid: int | None = None
    pgid: int | None = None


@attrs.frozen
class RunCompleted:
    """`process.completed`: the run is over; always its last event.

    The completion's fields read through (`outcome`, `status`, `exit_code`, ...), as the wire
    carries them beside `run` and `seq`.
    """

    run: str
    seq: int
    completion: Completion

    @property
    def outcome(self) -> OutcomeName:
        return self.completion.outcome

    @property
    def status(self) -> Status:
        return self.completion.status

    @property
    def exit_code(self) -> int | None:
        return self.completion.exit_code

    @property
    def signal(self) -> str | None:
        return self.completion.signal

    @property
    def reason(self) -> str | None:
        return self.completion.reason

    @property
    def rung(self) -> str | None:
        return self.completion.rung

    @property
    def timeout(self) -> Literal["idle", "absolute"] | None:
        return self.completion.timeout

    @property
    def execution_time(self) -> float | None:
        return self.completion.execution_time

    @property
    def stdout_bytes(self) -> int:
        return self.completion.stdout_bytes

    @property
    def stderr_bytes(self) -> int:
        return self.completion.stderr_bytes


@attrs.frozen
class RunGap:
    """`process.gap`: events from `seq` on are missing (journal quota, damage, a failed write).

    `details` says more where the cause has more to say (a damaged range, the error).
    """

    run: str
    seq: int
    reason: str
    details: Mapping[str, JSON] = attrs.field(factory=dict)


@attrs.frozen
class RunJournalError:
    """`process.journal_error`: a durable run's journal could not record event `seq` (a full
    or failing disk); `policy` says what follows ("block": the run waits for the disk;
    "cancel": the run is ended)."""

    run: str
    seq: int
    reason: str
    policy: str

    @property
    def ends_follow(self) -> bool:
        """The journal could not be *read* for this connection's follow (`attach`): the daemon
        follows the run no further here (attaching again reads from where it is asked)."""
        return self.reason.startswith(JOURNAL_UNREADABLE)


# The start of a `process.journal_error` reason that ends an attach's follow (runs/attach.py).
JOURNAL_UNREADABLE = "cannot read the journal"


@attrs.frozen
class ClaudeNotice:
    """`claude.event`: one typed event parsed from a Claude run's stream-json stdout."""

    run: str
    event: "ClaudeEvent"


RunEvent: TypeAlias = RunOutput | RunPaused | RunResumed | RunCompleted
# Written as a string: a Claude session's notice classes load only where one is sent or read.
Notice: TypeAlias = (
    "Connected | Shutdown | RunStarted | RunEvent | RunGap | RunJournalError | ClaudeNotice"
    " | SessionNotice"
)
