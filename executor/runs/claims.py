"""One run at a time per key (a Claude session id): the daemon's table of claims.

Theory of operation: a run that will write to a known Claude session (``resume``, a
``session_id``, ``continue`` in a directory) claims it before it is spawned; a run whose session
id is known only from its ``init`` line claims it then.  A claim is released when the run ends.
A second run for a claimed session is refused, or — with ``busy_session = "queue"`` — waits its
turn: waiters are served strictly first come, first served, whatever connection or protocol
they came from, and a waiter that gives up (its connection went away) leaves the queue.
"""

from __future__ import annotations

import collections

import trio


class Claims:
    """Which run holds which Claude session, daemon-wide, and who waits for it."""

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}
        self._waiting: dict[str, collections.deque[tuple[str, trio.Event]]] = {}

    def holder(self, key: str) -> str | None:
        return self._holders.get(key)

    def claim(self, key: str, run_id: str) -> bool:
        """Take `key` for `run_id` now; False if another run holds it or others wait first."""
        holder = self._holders.get(key)
        if holder is not None:
            return holder == run_id
        if self._waiting.get(key):
            return False  # others are in line before us
        self._holders[key] = run_id
        return True

    def release(self, key: str, run_id: str) -> None:
        """`run_id` is done with `key`: hand it to the first waiter, if any."""
        if self._holders.get(key) != run_id:
            return
        del self._holders[key]
        queue = self._waiting.get(key)
        if queue:
            waiter, turn = queue.popleft()
            self._holders[key] = waiter
            turn.set()
            if not queue:
                del self._waiting[key]

    async def wait_claim(self, key: str, run_id: str) -> None:
        """Wait in line for `key` and return holding it for `run_id`.

        A waiter that is cancelled leaves the line (or gives the claim on if it got it).
        """
        turn = self.line_up(key, run_id)
        if turn is not None:
            await self.wait_turn(key, run_id, turn)

    def line_up(self, key: str, run_id: str) -> trio.Event | None:
        """Take `key` now (None), or join its line now: the place in line is fixed by this
        call, not by when the waiting starts (`wait_turn`), so requests keep their order."""
        if self.claim(key, run_id):
            return None
        turn = trio.Event()
        self._waiting.setdefault(key, collections.deque()).append((run_id, turn))
        return turn

    async def wait_turn(self, key: str, run_id: str, turn: trio.Event) -> None:
        """Wait for the turn `line_up` gave; cancelled, leave the line (or pass the claim on)."""
        entry = (run_id, turn)
        try:
            await turn.wait()
        except BaseException:
            if turn.is_set():
                self.release(key, run_id)
            else:
                queue = self._waiting.get(key)
                if queue is not None:
                    queue.remove(entry)
                    if not queue:
                        del self._waiting[key]
            raise

    def waiting(self, key: str) -> int:
        return len(self._waiting.get(key, ()))
