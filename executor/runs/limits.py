"""Per-identity run limits: concurrent runs and starts per minute.

Theory of operation
-------------------
Every run start (the one start path, start.py: ``execute`` and ``claude``, durable or not,
from JSON-RPC or MCP) asks ``RunLimits.admit`` for a ``Ticket`` before anything is spawned; a
refusal is a ``LimitExceeded`` naming the limit and the identity.  The ticket counts as one
concurrent run of its identity until ``release`` (by the run's keeper once the run has
completed, or at once when the spawn failed).  Starts are counted in a sliding window of
``window`` seconds on trio's clock: the times of the admitted starts within the window are
kept (at most ``starts_per_minute`` per identity), so a refused start does not count and
memory is bounded by the limit.

The third per-identity limit, ``max_output_bytes``, is enforced by the runner itself
(``SpawnSpec.max_output_bytes``): the run is cancelled through the ladder once its output
exceeds it.
"""

from __future__ import annotations

import collections

import trio

from cc_executor.executor.config.policyfile import Limits, LimitSet
from cc_executor.protocol import LimitExceeded

WINDOW_SECONDS = 60.0


class Ticket:
    """One admitted run; ``release`` (idempotent) frees its concurrent slot."""

    def __init__(self, limits: RunLimits, identity: str) -> None:
        self._limits = limits
        self.identity = identity
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limits._release(self.identity)


class RunLimits:
    """The admission counters of every identity."""

    def __init__(self, limits: Limits, window: float = WINDOW_SECONDS) -> None:
        self._limits = limits
        self._window = window
        self._live: collections.Counter[str] = collections.Counter()
        self._starts: dict[str, collections.deque[float]] = {}

    def for_identity(self, identity: str) -> LimitSet:
        return self._limits.for_identity(identity)

    def live(self, identity: str) -> int:
        return self._live[identity]

    def admit(self, identity: str) -> Ticket:
        """Count a run start for `identity`, or raise LimitExceeded."""
        limits = self._limits.for_identity(identity)
        if limits.concurrent_runs is not None and self._live[identity] >= limits.concurrent_runs:
            raise LimitExceeded(
                f"{identity} already has {self._live[identity]} runs "
                f"(limit concurrent_runs={limits.concurrent_runs})",
                {"limit": "concurrent_runs", "value": limits.concurrent_runs, "identity": identity},
            )
        if limits.starts_per_minute is not None:
            now = trio.current_time()
            starts = self._starts.setdefault(identity, collections.deque())
            while starts and starts[0] <= now - self._window:
                starts.popleft()
            if len(starts) >= limits.starts_per_minute:
                retry = starts[0] + self._window - now
                raise LimitExceeded(
                    f"{identity} started {len(starts)} runs in the last {self._window:g} s "
                    f"(limit starts_per_minute={limits.starts_per_minute}); "
                    f"retry in {retry:.1f} s",
                    {
                        "limit": "starts_per_minute",
                        "value": limits.starts_per_minute,
                        "identity": identity,
                        "retry_after": round(retry, 3),
                    },
                )
            starts.append(now)
        self._live[identity] += 1
        return Ticket(self, identity)

    def _release(self, identity: str) -> None:
        self._live[identity] -= 1
        if self._live[identity] <= 0:
            del self._live[identity]
