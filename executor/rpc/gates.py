"""Reply-before-events on one connection: the gates that hold a run's events back.

Theory of operation: a request that causes events of a run — an ``execute`` or ``attach``
(every event of the run) or a PAUSE/RESUME/CANCEL (its state events) — closes a gate on that
run before its handler runs; the session opens it once the reply, and whatever must follow the
reply directly (``process.started``), are on the wire.  A ``claude.send``, ``.permission`` or
``.interrupt`` closes one on the session's notices only at the moment it causes them (the
message booked, the answer decided, the CLI's answer read), when nothing is left for it to do
but reply.  Whatever sends an event of the run waits at the gate first (``wait``).  Nothing
waits on the gate while holding what the handler needs: output passes a control's gate (a
PAUSE waits for its processes, never for the pump), and a claude.* gate is closed only once
its handler needs nothing more, so no gate can deadlock a run.  The protocol's own check
(``ServerConnection.hold``) refuses an event that got past a gate too early, so a mistake here
is a crash, never a reordering.
"""

from __future__ import annotations

from collections.abc import Hashable

import trio

from cc_executor.protocol.connection import HoldScope, holds_back
from cc_executor.protocol.notices import Notice


class Gates:
    """Closed gates of one connection, by run."""

    def __init__(self) -> None:
        self._closed: dict[str, dict[Hashable, tuple[HoldScope, trio.Event]]] = {}
        self._runs_of: dict[Hashable, set[str]] = {}

    def close(self, key: Hashable, run: str, scope: HoldScope) -> None:
        """Hold events of `run` (all, or its state events) until `open(key)`."""
        gates = self._closed.setdefault(run, {})
        held = gates.get(key)
        if held is not None and held[0] == "all":
            return  # a wider gate is never narrowed
        gates[key] = (scope, held[1] if held is not None else trio.Event())
        self._runs_of.setdefault(key, set()).add(run)

    def open(self, key: Hashable) -> None:
        """Let through what `key` held (idempotent)."""
        for run in self._runs_of.pop(key, ()):
            gates = self._closed.get(run, {})
            held = gates.pop(key, None)
            if held is not None:
                held[1].set()
            if not gates:
                self._closed.pop(run, None)

    async def wait(self, notice: Notice) -> None:
        """Return once no gate holds `notice`."""
        run = getattr(notice, "run", None)
        if not isinstance(run, str):
            return
        while True:
            gates = self._closed.get(run)
            waiting = None
            if gates:
                waiting = next(
                    (event for scope, event in gates.values() if holds_back(scope, notice)),
                    None,
                )
            if waiting is None:
                return
            await waiting.wait()
