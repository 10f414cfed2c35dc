"""The daemon's control requests to a session's CLI, each answered exactly once.

Theory of operation: a request (``initialize``, ``interrupt``, ``set_model``,
``set_permission_mode``) gets the id ``ccx-<n>`` and is written to the CLI's stdin; its caller
waits for one of three outcomes, whichever comes first: the CLI's ``control_response`` with
that id (``answered``, from the pump's delivery), ``ControlTimeout`` after `timeout`, or
``InvalidState`` once the run has ended (``fail_all``) — never an indefinite wait.  A
``control_response`` with an id that is not pending (the CLI echoes the answers it was given
to its own requests) is ignored.  A caller may ask to be told (`answered`, called by the pump)
the moment the answer is read, before anything after it in the CLI's output is posted.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import attrs
import trio

from cc_executor.protocol import ControlTimeout, InvalidState
from cc_executor.protocol.claude import ControlResponse
from cc_executor.protocol.claude.session import control_request_line
from cc_executor.protocol.messages import JSON

# Called at once, without a checkpoint, just before a session posts the notices a client's
# request causes: the client's connection holds them back until its reply is out.
Hold = Callable[[], None]


def no_hold() -> None:
    """The `Hold` of a caller that holds nothing back."""


@attrs.define(eq=False)
class _Waiting:
    subtype: str
    answered: Hold
    done: trio.Event = attrs.field(factory=trio.Event)
    response: JSON = None
    error: str | None = None


class Controls:
    """The control requests in flight on one session run."""

    def __init__(self, run_id: str, write: Callable[[bytes], Awaitable[None]], timeout: float):
        self._run_id = run_id
        self._write = write
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._waiting: dict[str, _Waiting] = {}
        self.ended = False

    async def request(self, request: dict[str, JSON], answered: Hold = no_hold) -> JSON:
        """Send `request`; return the CLI's response object (`answered` is called as it is
        read, or as the run ends first).

        Raises:
            ControlTimeout: no answer within the timeout.
            InvalidState: the CLI answered with an error, or the run ended first.
        """
        subtype = str(request["subtype"])
        run_id = self._run_id
        if self.ended:
            raise InvalidState(f"run {run_id}: the run ended", {"run": run_id, "state": "ended"})
        request_id = f"ccx-{next(self._ids)}"
        waiting = self._waiting[request_id] = _Waiting(subtype, answered)
        try:
            await self._write(control_request_line(request_id, request))
            with trio.move_on_after(self._timeout):
                await waiting.done.wait()
        finally:
            del self._waiting[request_id]
        if not waiting.done.is_set():
            raise ControlTimeout(
                f"run {run_id}: the CLI did not answer {subtype} within {self._timeout:g} s",
                {"run": run_id, "control": subtype},
            )
        if waiting.error is not None:
            raise InvalidState(
                f"run {run_id}: {subtype}: {waiting.error}",
                {"run": run_id, "control": subtype, "error": waiting.error},
            )
        return waiting.response

    def answered(self, response: ControlResponse) -> None:
        """The CLI's answer to one of ours (or an echo of one of its own: ignored)."""
        waiting = self._waiting.get(response.request_id or "")
        if waiting is None or waiting.done.is_set():
            return
        waiting.response = response.response
        if response.subtype == "error":
            waiting.error = response.error or "error"
        waiting.answered()
        waiting.done.set()

    def settle(self, subtype: str) -> None:
        """What the waiting requests of `subtype` asked for has happened (an interrupted turn
        ended before the CLI answered the interrupt): they are answered (no response object),
        and the CLI's answer, when it comes, is ignored."""
        for waiting in self._waiting.values():
            if waiting.subtype == subtype and not waiting.done.is_set():
                waiting.answered()
                waiting.done.set()

    def fail_all(self) -> None:
        """The run is over: every waiter gets InvalidState; no new request is sent."""
        self.ended = True
        for waiting in self._waiting.values():
            if not waiting.done.is_set():
                waiting.error = "the run ended"
                waiting.answered()
                waiting.done.set()
