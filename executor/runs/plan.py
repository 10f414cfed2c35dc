"""A run's plan: everything decided about a run before it is spawned.

Theory of operation: every request that starts a run — ``execute`` or ``claude``, over JSON-RPC
or MCP — is first turned into a ``RunPlan`` (here for ``execute``; claude/plan.py for
``claude``): the vetted argv, environment and cwd (policy), the rlimits and output limit of the
owner, the supervision settings, the timeouts, whether the run is durable, the key it must hold
exclusively (a Claude session id), and the observer that watches its events (the Claude
watcher).  The one start path (start.py) takes a plan and nothing else, so every kind of run is
admitted, spawned, pumped and ended the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import attrs

from cc_executor.executor.runs.live import RunKind
from cc_executor.protocol import ExecuteParams
from cc_executor.protocol.claude import ClaudeEvent
from cc_executor.protocol.messages import JSON
from cc_executor.protocol.notices import Completion
from cc_executor.supervision import Outcome, Run, SequencedEvent, SpawnSpec, SupervisionConfig

if TYPE_CHECKING:
    from cc_executor.executor.config.server import ServerConfig
    from cc_executor.executor.runs.claims import Claims
    from cc_executor.executor.runs.policy import CommandPolicy


class RunObserver(Protocol):
    """Watches a run's events as the pump delivers them (the Claude watcher is one)."""

    def feed(self, event: SequencedEvent) -> list[ClaudeEvent]:
        """The typed events `event` completes, for the sinks (before it is delivered)."""

    def delivered(self) -> None:
        """The event fed last has been delivered."""

    def completion(self, base: Completion, outcome: Outcome) -> Completion:
        """The run's completion as this observer amends it."""

    def summary(self) -> dict[str, JSON]:
        """What it adds to the run's status."""

    async def watch(self) -> None:
        """A task beside the pump, until the run is over."""

    def closing(self) -> None:
        """The run's process is over, its Completed about to be numbered: post what must
        precede it (a session withdraws its pending requests)."""

    def release(self) -> None:
        """The run is over: release what the observer holds."""


# Posts a note into the run's sequenced stream (the pump numbers it): (name, body).
Post = Callable[[str, bytes], None]

# Makes a run's observer once it is spawned: (the run, the claims table, where to tell its
# own unsequenced events, where to post sequenced notes) -> observer.
ObserverFactory = Callable[
    [Run, "Claims", Callable[[ClaudeEvent], Awaitable[None]], Post], RunObserver
]


@attrs.frozen
class RunPlan:
    """What to spawn and how to run it (see the module docstring)."""

    kind: RunKind
    spec: SpawnSpec
    supervision: SupervisionConfig
    timeout: float | None
    idle_timeout: float | None
    durable: bool
    exclusive: str | None = None  # a key only one run may hold at a time
    observe: ObserverFactory | None = None
    session: bool = False  # a live Claude session (its observer is a ClaudeSession)

    @property
    def run_id(self) -> str:
        return self.spec.run_id


def plan_execute(
    config: ServerConfig,
    policy: CommandPolicy,
    params: ExecuteParams,
    owner: str,
    run_id: str,
) -> RunPlan:
    """The plan of an ``execute`` request, vetted by policy (raises the wire's errors)."""
    return RunPlan(
        kind="command",
        spec=policy.vet(params, owner, run_id),
        supervision=config.supervision,
        timeout=params.timeout,
        idle_timeout=params.idle_timeout,
        durable=params.durable,
    )
