"""A run as the daemon holds it, whatever started it and wherever its events go.

Theory of operation: a ``LiveRun`` is made by the one start path (start.py) for every kind of
run — an ``execute`` or a ``claude`` request, over JSON-RPC or MCP, durable or not.  It joins
supervision's handle (``Run``: state, pid, byte counts, controls) with what the daemon adds:
who owns it, which connection started it, its journal if durable, the Claude watcher if it is
a Claude run, and — once it is over — its ``Completion`` as the wire describes it.  The run
table (table.py) holds every live run and the recently completed ones; ``status`` and ``list``
read them from there, for any connection of the owner's identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import trio

from cc_executor.protocol.notices import Completion
from cc_executor.protocol.results import RunInfo
from cc_executor.supervision import Run, RunState

if TYPE_CHECKING:
    from cc_executor.executor.runs.durable import DurableRun
    from cc_executor.executor.runs.plan import RunObserver
    from cc_executor.executor.transport.frontdoor import Identity
    from cc_executor.supervision import OutputPump

RunKind = Literal["command", "claude"]


def shown_state(run: Run | None, completion: object | None) -> str:
    """A run's state as clients see it: completed only together with its completion.
    Supervision's run is over (reaped, its pipes read to the end) a moment before the
    completion is recorded, and it is still ending until then.  A durable run read back
    from its journal (no `run`) without a completion is lost."""
    if completion is not None:
        return "completed"
    if run is None:
        return "lost"
    state = run.state
    return RunState.ENDING.value if state is RunState.COMPLETED else state.value


class LiveRun:
    """One run: supervision's handle plus its owner, origin, sinks' state and completion."""

    def __init__(
        self,
        run: Run,
        *,
        kind: RunKind,
        owner: Identity,
        origin: str | None,
        started_wall: float,
        durable: DurableRun | None = None,
    ) -> None:
        self.run = run
        self.run_id = run.run_id
        self.kind = kind
        self.owner = owner
        self.origin = origin  # the session that started it (None: not started by a session)
        self.started_wall = started_wall
        self.durable = durable
        self.pump: OutputPump | None = None
        self.claude: RunObserver | None = None  # the Claude watcher of a Claude run
        self.session = False  # a live Claude session: its stdin is the daemon's
        self.completion: Completion | None = None
        self.done = trio.Event()  # the completion is recorded and every sink has it

    @property
    def argv(self) -> tuple[str, ...]:
        return self.run.argv

    @property
    def last_seq(self) -> int:
        if self.durable is not None:
            return self.durable.journal.last_seq
        return 0 if self.pump is None else self.pump.last_seq

    @property
    def state(self) -> str:
        return shown_state(self.run, self.completion)

    def visible_to(self, identity: Identity) -> bool:
        return identity.admin or identity.name == self.owner.name

    def info(self, now: float, session: str | None = None) -> RunInfo:
        """The run as ``status`` and ``list`` show it; `session` asks whether it is "here"."""
        run = self.run
        journal = None if self.durable is None else self.durable.journal_info()
        return RunInfo(
            run=self.run_id,
            state=self.state,
            pid=run.pid,
            pgid=run.pgid,
            argv=tuple(run.argv),
            elapsed=round(
                (self.completion.execution_time or 0.0)
                if self.completion is not None and self.completion.execution_time is not None
                else now - run.started_at,
                6,
            ),
            stdout_bytes=run.stdout_bytes,
            stderr_bytes=run.stderr_bytes,
            last_seq=self.last_seq,
            started=round(self.started_wall, 3),
            durable=self.durable is not None,
            owner=self.owner.name,
            here=None if session is None else session == self.origin,
            completion=self.completion,
            journal=journal,
            claude=None if self.claude is None else self.claude.summary(),
        )
