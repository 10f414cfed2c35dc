"""The watcher of one Claude run: its stream-json, its idle watchdog, its post-result grace.

Theory of operation
-------------------
The one start path (runs/start.py) gives every Claude run a ``ClaudeWatch``, whatever protocol
started it and wherever its events go (a connection, a journal, an MCP call).  The pump's
delivery passes through it: ``feed`` parses stdout into typed events (once, for every sink),
notes the ``init`` line (the run claims its Claude session id, if it had not already) and the
first ``result``; ``delivered`` marks the end of each delivery.  ``watch`` is a task beside the
pump that does what needs a clock:

  * the idle watchdog: no stdout for ``idle_timeout`` seconds (while nothing is being
    delivered, nothing waits unread in the pipe, and the run is not paused) → report,
    interrupt (SIGINT; a second idle period escalates to cancel) or cancel; every firing is
    told to the sinks as a ``Watchdog`` event;
  * after the ``result`` line: ``post_result_grace`` for the run to end by itself, then the
    ladder (the CLI is known to hang after its result).

In a session run (claude/session.py) a ``result`` ends a turn, not the run: the watcher does
not track results, there is no post-result grace, and the session tells it when the run is
*waiting* (idle, or a permission request pending) — the idle clock stands still then and
restarts when a turn runs again (``activity``); the watchdog's ``interrupt`` is the session's
interrupt control request, not SIGINT.

Its claims on Claude session ids are released when the run ends (``release``).  The run's
completion gets its ``claude`` summary and a ``status`` that follows the ``result`` line, not
the exit code (``completion``).
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs
import structlog
import trio

from cc_executor.executor.runs.attach import stream_json_events
from cc_executor.executor.runs.control import cancel_quietly
from cc_executor.protocol.claude import (
    ClaudeEvent,
    IdleAction,
    Init,
    Result,
    StreamJsonParser,
    Watchdog,
    result_summary,
)
from cc_executor.protocol.messages import JSON
from cc_executor.protocol.notices import Completion, Status
from cc_executor.supervision import (
    Cancelled,
    CompletedEvent,
    Exited,
    Outcome,
    Output,
    Run,
    RunState,
    SequencedEvent,
)
from cc_executor.supervision.signalling import kill_group

if TYPE_CHECKING:
    from cc_executor.executor.runs.claims import Claims

log = structlog.get_logger()

# Reasons the profile itself ends a run (anything else that cancels a run is the client's).
LINGERED = "the CLI lingered after its result"
WATCHDOG = "watchdog: no stream-json event"


@attrs.frozen
class WatchSettings:
    """What a Claude run's watcher enforces (from the request, else the daemon's config)."""

    idle_timeout: float | None
    idle_action: IdleAction
    post_result_grace: float
    max_line_bytes: int
    session: bool = False  # a live session: results end turns, not the run


class ClaudeWatch:
    """One Claude run's stream-json parse, watchdog and post-result grace."""

    def __init__(
        self,
        run: Run,
        settings: WatchSettings,
        claims: Claims,
        held: list[str],
        notify: Callable[[ClaudeEvent], Awaitable[None]],
    ) -> None:
        self._run = run
        self._settings = settings
        self._claims = claims
        self._held = held  # Claude session ids this run holds
        self._notify = notify
        self._parser = StreamJsonParser(settings.max_line_bytes)
        self.init: Init | None = None
        self.result: Result | None = None
        self.lingered = False
        self.watchdog_fired = 0
        self._result_seen = trio.Event()
        self._completed = False
        self._delivering = False
        self._last_activity = trio.current_time()
        self._scope: trio.CancelScope | None = None
        # Set by a session: the run waits for its user (the watchdog does not count), and
        # how to interrupt a turn without SIGINT.
        self.waiting: Callable[[], bool] = lambda: False
        self.interrupter: Callable[[], Awaitable[None]] | None = None

    # -- delivery (called by the pump's tee) -----------------------------------------

    def feed(self, event: SequencedEvent) -> list[ClaudeEvent]:
        """The typed events `event` completes (stdout lines; the last line at completion)."""
        if isinstance(event, CompletedEvent):
            self._completed = True
        elif isinstance(event, Output) and event.stream == "stdout":
            self._delivering = True
            self._rearm()
        return self._note(stream_json_events(self._parser, event))

    def delivered(self) -> None:
        """The event fed last has been delivered (the idle clock restarts)."""
        if self._delivering:
            self._delivering = False
            self._last_activity = trio.current_time()
            self._rearm()

    def flush(self) -> list[ClaudeEvent]:
        """The typed events of a last stdout line without a newline, now (the process is
        over: nothing follows it), rather than with the completion; fed once."""
        return self._note(self._parser.close())

    def _note(self, events: list[ClaudeEvent]) -> list[ClaudeEvent]:
        for typed in events:
            if isinstance(typed, Init) and self.init is None:
                self.init = typed
                self._claim(typed.session_id)
            elif isinstance(typed, Result) and self.result is None and not self._settings.session:
                self.result = typed
                self._result_seen.set()
                # The result is written: SIGINT has nothing left to save, so a CANCEL in the
                # post-result window (or the lingering cancel) goes straight to SIGTERM.
                self._run.skip_interrupt()
        return events

    def _claim(self, key: str | None) -> None:
        if key is None or key in self._held:
            return
        if self._claims.claim(key, self._run.run_id):
            self._held.append(key)
        else:
            log.warning("claude.session_busy", claude_session=key, holder=self._claims.holder(key))

    def closing(self) -> None:
        pass  # nothing of a one-shot run's precedes its completion

    def release(self) -> None:
        """The run is over: give up its Claude sessions."""
        for key in self._held:
            self._claims.release(key, self._run.run_id)
        self._held.clear()

    # -- what the run reports ---------------------------------------------------------

    def summary(self) -> dict[str, JSON]:
        """The `claude` object of the run's status and completion."""
        return {
            **result_summary(self.result, self.init.session_id if self.init else None),
            "lingered": self.lingered,
            "watchdog_fired": self.watchdog_fired,
        }

    def completion(self, base: Completion, outcome: Outcome) -> Completion:
        """`base` with the Claude summary, its status following the `result` line."""
        return attrs.evolve(base, status=self._status(outcome, base.status), claude=self.summary())

    def _status(self, outcome: Outcome, status: Status) -> Status:
        if isinstance(outcome, Cancelled) and not outcome.reason.startswith((LINGERED, WATCHDOG)):
            return status  # the client cancelled it
        if self.result is None or self.result.failed:
            return "failed"
        if self.lingered or outcome == Exited(0):
            return "completed"
        return "failed"

    # -- the watcher (a task beside the pump) ------------------------------------------

    async def watch(self) -> None:
        """Watchdog, then post-result grace; returns once the run is over."""
        async with trio.open_nursery() as nursery:

            async def end_with_run() -> None:
                await self._run.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(end_with_run)
            await self._watchdog()
            await self._after_result()
            nursery.cancel_scope.cancel()

    def _idle_deadline(self) -> float:
        idle = self._settings.idle_timeout
        if idle is None or self._delivering or self.waiting():
            return float("inf")
        return self._last_activity + idle

    def activity(self) -> None:
        """The run is busy again (a session's turn started or was unblocked): the idle
        clock restarts now."""
        self._last_activity = trio.current_time()
        self._rearm()

    def _rearm(self) -> None:
        if self._scope is not None:
            self._scope.deadline = self._idle_deadline()

    async def _watchdog(self) -> None:
        interrupted = False
        idle = self._settings.idle_timeout
        while not self._result_seen.is_set():
            with trio.CancelScope(deadline=self._idle_deadline()) as scope:
                self._scope = scope
                await self._result_seen.wait()
            self._scope = None
            if not scope.cancelled_caught:
                return
            if self._run.state is RunState.PAUSED:
                self._last_activity = trio.current_time()  # paused: not idle
                continue
            if trio.current_time() < self._idle_deadline():
                continue  # output arrived as the deadline passed
            if self._run.unread_bytes("stdout") > 0:
                # The child wrote; the daemon has not read it yet (it was busy or stopped):
                # that is not idleness of the child.
                self._last_activity = trio.current_time()
                continue
            self.watchdog_fired += 1
            action = self._settings.idle_action
            if action == "interrupt" and interrupted:
                action = "cancel"  # the interrupt did not end it: escalate
            log.info("claude.watchdog", run=self._run.run_id, idle=idle, action=action)
            if not self._completed:
                await self._notify(Watchdog(idle, action))
            self._last_activity = trio.current_time()
            if action == "interrupt":
                interrupted = True
                if self.interrupter is not None:
                    await self.interrupter()
                else:
                    kill_group(self._run.pgid, signal.SIGINT)
            elif action == "cancel":
                await cancel_quietly(self._run, f"{WATCHDOG} for {idle} s")
                return

    async def _after_result(self) -> None:
        if not self._result_seen.is_set():
            return
        with trio.move_on_after(self._settings.post_result_grace):
            await self._run.wait_ending()
            return
        log.info("claude.lingered", run=self._run.run_id, grace=self._settings.post_result_grace)
        self.lingered = True
        await cancel_quietly(self._run, LINGERED)
