"""One connection's waits for the state directory, given up when its client goes away.

A restarted daemon reads its journals while it serves, and a lookup of a run (``list``,
``status``, ``attach``, ``detach``, a control on a run not live here) waits until every
journal is read (``DurableRuns.loaded``).  On a slow or hung volume that can be long.  A
client that goes away meanwhile will read no answer, and a JSON-RPC connection answers its
requests in order, so its reader waits with the lookup: the wait is given up as soon as the
connection's reader ends (``ServerWebSocket.when_closed``), and the session ends at once instead
of holding its ``max_connections`` slot until the read is over.  Only the wait is given up,
never an action: a request that starts or controls a run does what it was asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from cc_executor.executor.rpc.runs import Gone

if TYPE_CHECKING:
    from cc_executor.executor.runs.durable import DurableRuns


class Lookups:
    """The waits of one connection for `DurableRuns.loaded`."""

    def __init__(self, durable: DurableRuns) -> None:
        self._durable = durable
        self._waits: set[trio.CancelScope] = set()
        self._abandoned = False

    def abandon(self) -> None:
        """The client is gone: end every wait now, and any later one at once."""
        self._abandoned = True
        for scope in self._waits:
            scope.cancel()

    async def loaded(self) -> None:
        """Return once every journal is read (at once, without a checkpoint, if it is).

        Raises:
            Gone: the client went away first; nobody is left to answer.
        """
        if self._durable.is_loaded():
            return
        with trio.CancelScope() as scope:
            if self._abandoned:
                scope.cancel()
            self._waits.add(scope)
            try:
                await self._durable.loaded()
            finally:
                self._waits.discard(scope)
        if scope.cancelled_caught:
            raise Gone
