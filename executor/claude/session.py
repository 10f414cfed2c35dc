"""A live Claude session run: turns, messages, control requests, state — one CLI, many turns.

Theory of operation
-------------------
A session run (``claude {session: true}``) is an ordinary run on the one start path; its
observer is a ``ClaudeSession``, which wraps the run's ``ClaudeWatch`` (stream-json parsing,
session claims, the watchdog) and owns the CLI's stdin.  Everything the CLI says arrives
through ``feed`` (the pump's delivery, in order); everything the session tells clients is
*posted* into the run's sequenced stream (``claude.turn_started`` ... ``claude.state``), so it
is numbered with the output, journaled for a durable run and replayed exactly once on attach.

Turns follow the CLI (turns.py): every turn starts with a ``system/init`` line and ends with
its own ``result``; a message is written with a fresh ``uuid`` that the CLI echoes when it
takes it, so a message sent while a turn runs is reported as taken by it (``claude.message``)
or as starting the next one.  The daemon's control requests (``initialize`` first, then
``interrupt``, ``set_model``, ``set_permission_mode``) each get exactly one outcome
(controls.py): the CLI's answer, a timeout, or an error once the run has ended.  The CLI's own
requests: ``can_use_tool`` goes to the permission broker (permissions.py), any other is
answered with an error, ``control_cancel_request`` withdraws a pending permission request,
and so does the ``result`` of its turn (before the turn's end is posted: a request belongs to
its turn; on stdin EOF the CLI gives it up without a word).

State (``idle``, ``running``, ``requires_action``, ``paused``) is derived, never stored:
paused if the run is paused; requires_action while a permission request is pending; running
while a turn is open or a queued message waits for one; idle otherwise.  Each change is posted.
The watchdog counts only while running.

The API the JSON-RPC handlers (rpc/claude.py) and the MCP tools call — each raises the wire's
errors (InvalidParams, InvalidState, AlreadyDecided, ControlTimeout):

- ``await send(content, message_id=None) -> ClaudeSent``; ``await interrupt() -> int`` (the
  turn interrupted); ``await set_model(model)`` / ``set_permission_mode(mode) -> JSON``
  (the controls are refused while the run is paused: they would time out, then take effect)
- ``await answer(request, behavior, by, updated_input=None, message=None)``
- ``await close()`` (stdin EOF, ``close_grace``, then the ladder; returns when the process is gone)
- ``snapshot() -> dict`` (the ``claude`` object of ``status``)

``session_of(live)`` finds a run's session (or raises the -32602 that says it has none);
`by` names the decider as journaled (``client:<identity>/<connection id>`` over JSON-RPC).

Its tasks (``watch``: the watchdog, the broker's timer, the stdin writer, ``initialize`` and
the first prompt) live beside the pump in the run's keeper and end with the run.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import structlog
import trio

from cc_executor.executor.claude.controls import Controls, Hold, no_hold
from cc_executor.executor.claude.permissions import PermissionBroker, PermissionSettings
from cc_executor.executor.claude.turns import Turns
from cc_executor.executor.claude.watch import ClaudeWatch
from cc_executor.executor.runs.control import cancel_quietly
from cc_executor.executor.runs.live import LiveRun
from cc_executor.executor.runs.plan import Post
from cc_executor.executor.runs.wire import note_body
from cc_executor.protocol import ControlTimeout, InvalidParams, InvalidState, LimitExceeded
from cc_executor.protocol.claude import (
    Behavior,
    ClaudeEvent,
    ClaudeStateChanged,
    ControlCancel,
    ControlRequest,
    ControlResponse,
    Init,
    Replayed,
    Result,
    SessionNotice,
)
from cc_executor.protocol.claude.session import control_error_line, control_success_line, user_line
from cc_executor.protocol.messages import JSON
from cc_executor.protocol.notices import Completion
from cc_executor.protocol.results import ClaudeSent
from cc_executor.supervision import (
    CompletedEvent,
    Exited,
    InvalidTransition,
    Outcome,
    Run,
    RunState,
    SequencedEvent,
    StateEvent,
    StdinFull,
)
from cc_executor.supervision import ControlTimeout as StillStopped

log = structlog.get_logger()

CLOSED = "claude.close: the CLI did not exit after stdin EOF"


def session_of(live: LiveRun) -> ClaudeSession:
    """The session of a run, or the -32602 that says it is not one."""
    observer = live.claude
    if not isinstance(observer, ClaudeSession):
        raise InvalidParams(
            f"run {live.run_id} is not a Claude session run (start it with session: true)",
            {"run": live.run_id},
        )
    return observer


@attrs.frozen
class SessionSettings:
    """What a session run needs beyond its watcher's settings (config/claude.py)."""

    control_timeout: float
    close_grace: float
    permissions: PermissionSettings
    prompt: str | None = None  # the first message, sent once the CLI is initialized


class ClaudeSession:
    """One session run's turns, messages, controls and permissions (see the docstring)."""

    def __init__(self, run: Run, watch: ClaudeWatch, settings: SessionSettings, post: Post):
        self._run = run
        self.run_id = run.run_id
        self.watcher = watch
        self._settings = settings
        self._post_note = post
        self.turns = Turns(run.run_id, self._post, self._update_state)
        self.broker = PermissionBroker(
            run.run_id, settings.permissions, self._post, self._respond, self._update_state
        )
        self._outbox: list[bytes] = []  # lines for stdin from synchronous callers, in order
        self._outbox_wake = trio.Event()
        self._stdin_lock = trio.Lock()
        watch.waiting = lambda: self.state != "running"
        watch.interrupter = self._watchdog_interrupt
        self.controls = Controls(run.run_id, self._write, settings.control_timeout)
        self._ready = trio.Event()  # initialize answered (or the run ended)
        self._opened = trio.Event()  # the first prompt is queued, or never will be
        self.initialize: JSON = None
        self._posted_state = "idle"
        self._paused = False
        self._closing = False
        self._ended = False
        self._tail: list[ClaudeEvent] = []  # the typed events of a last line (closing)

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        if self._paused:
            return "paused"
        if self.broker.pending:
            return "requires_action"
        return "running" if self.turns.running else "idle"

    def _update_state(self) -> None:
        state = self.state
        if state == self._posted_state or self._ended:
            return
        self._posted_state = state
        self._post(ClaudeStateChanged(self.run_id, 0, state))
        if state == "running":
            self.watcher.activity()

    def _post(self, notice: SessionNotice) -> None:
        if not self._ended:
            self._post_note(*note_body(notice))

    # -- the observer's half (RunObserver) ---------------------------------------------------

    def feed(self, event: SequencedEvent) -> list[ClaudeEvent]:
        typed = self.watcher.feed(event)
        if isinstance(event, StateEvent):
            self._paused = event.state is RunState.PAUSED
            self.broker.set_paused(self._paused)
            self._update_state()
        for item in typed:
            self._note(item)
        if isinstance(event, CompletedEvent):  # a last line without a newline, noted already
            typed, self._tail = [*self._tail, *typed], []
        return typed

    def delivered(self) -> None:
        self.watcher.delivered()

    def _note(self, item: ClaudeEvent) -> None:
        match item:
            case Init():
                self.turns.init()
            case Replayed(uuid=key):
                self.turns.replayed(key)
            case Result():
                turns = self.turns
                if turns.interrupting == (turns.turn if turns.open else turns.turn + 1):
                    # The interrupted turn is over: that answers the interrupt, whether the
                    # CLI's own answer came before this line or is still to come (its reply
                    # then precedes the turn's end all the same).
                    self.controls.settle("interrupt")
                # A request still pending belongs to the turn this result ends (the CLI gave
                # it up: stdin closed under it): it is decided before the turn's end is told.
                self.broker.withdraw_all("the turn ended")
                turns.result(item)
            case ControlRequest(request_id=request_id, subtype="can_use_tool", request=body):
                self.broker.request(request_id, body)
            case ControlRequest(request_id=request_id, subtype=subtype) if request_id:
                refusal = f"cc-executor does not handle {subtype}"
                self._write_soon(control_error_line(request_id, refusal))
            case ControlResponse():
                self.controls.answered(item)
            case ControlCancel(request_id=request_id):
                self.broker.withdraw(request_id, "the CLI withdrew the request")
            case _:
                pass

    def closing(self) -> None:
        """The process is over: what its last line (one without a newline) says is noted
        first — a `result` there ends its turn before the completion, as any other —, then
        what is pending is withdrawn and the waiting controls fail.  That line's typed events
        go out with the completion (`feed`)."""
        if not self._ended:
            self._tail = self.watcher.flush()
            for item in self._tail:
                self._note(item)
        self.broker.close()
        self.controls.fail_all()
        self._ready.set()
        self._opened.set()
        self._ended = True

    def release(self) -> None:
        """The run is over (also when its pump never numbered a completion: a client gone,
        a failure): nothing stays pending, no control waits."""
        self._ended = True  # nothing is posted from now on
        self.closing()
        self.watcher.release()

    def snapshot(self) -> dict[str, JSON]:
        """The `claude` object of the run's status (and completion)."""
        init = self.watcher.init
        session_id = init.session_id if init is not None else None
        turns = self.turns
        if session_id is None and turns.last_result is not None:
            last = turns.last_result.get("session_id")
            session_id = last if isinstance(last, str) else None
        pending: list[JSON] = list(self.broker.snapshot())
        return {
            "session": True,
            "session_id": session_id,
            "state": "ended" if self._ended else self.state,
            "turn": turns.turn,
            "turns": turns.turns,
            "cost_usd": turns.cost_usd,
            "usage": dict(turns.usage),
            "pending": pending,
            "last_result": turns.last_result,
            "watchdog_fired": self.watcher.watchdog_fired,
        }

    summary = snapshot  # the observer's name for it (RunObserver)

    def completion(self, base: Completion, outcome: Outcome) -> Completion:
        """A session ends well when its CLI exits by itself: 0, or after `claude.close`."""
        status = base.status
        if isinstance(outcome, Exited) and (outcome.code == 0 or self._closing):
            status = "completed"
        return attrs.evolve(base, status=status, claude=self.snapshot())

    async def watch(self) -> None:
        """The session's tasks beside the pump, until the run is over."""
        async with trio.open_nursery() as nursery:

            async def end_with_run() -> None:
                await self._run.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(end_with_run)
            nursery.start_soon(self.watcher.watch)
            nursery.start_soon(self.broker.serve)
            nursery.start_soon(self._write_outbox)
            nursery.start_soon(self._start)

    async def _start(self) -> None:
        """`initialize`, then the first prompt; a failure ends the session (it cannot work).

        The prompt is part of the accepted start: a `close` meanwhile waits for it to be
        queued (`_opened`), so its EOF comes after it (it was dropped, as a send refused)."""
        try:
            try:
                self.initialize = await self.controls.request(
                    {"subtype": "initialize", "hooks": None}
                )
            except (ControlTimeout, InvalidState) as exc:
                log.warning("claude.session_initialize_failed", run=self.run_id, error=exc.message)
                self._closing = True  # a send that waited for it is refused, not booked
                await cancel_quietly(self._run, f"the CLI did not initialize: {exc.message}")
                return
            finally:
                self._ready.set()
            if self._settings.prompt is not None:
                try:
                    await self.send(self._settings.prompt, first=True)
                except (InvalidState, InvalidParams, LimitExceeded) as exc:
                    log.warning("claude.session_prompt_failed", run=self.run_id, error=exc.message)
        finally:
            self._opened.set()

    # -- stdin ------------------------------------------------------------------------------

    async def _write(self, line: bytes) -> None:
        """One line into stdin, one at a time (a waiting answer has one line ahead of it)."""
        with self._stdin_errors(line):
            async with self._stdin_lock:
                await self._run.write_stdin(line)

    def _queue(self, line: bytes) -> None:
        """One line queued for stdin at once, without a checkpoint (Run.queue_stdin)."""
        with self._stdin_errors(line):
            self._run.queue_stdin(line)

    @contextlib.contextmanager
    def _stdin_errors(self, line: bytes) -> Iterator[None]:
        """The wire's errors for a line stdin does not take."""
        try:
            yield
        except StdinFull as exc:
            raise LimitExceeded(
                f"run {self.run_id}: a line of {len(line)} bytes is more than the stdin bound",
                {"run": self.run_id, "limit": "stdin_max_pending", "value": exc.bound},
            ) from None
        except InvalidTransition as exc:
            raise InvalidState(
                f"run {self.run_id}: the session's stdin is closed ({exc})",
                {"run": self.run_id, "state": "closing"},
            ) from None

    def _write_soon(self, line: bytes) -> None:
        """Queue a line for stdin (from a synchronous caller: the pump's delivery)."""
        self._outbox.append(line)
        self._outbox_wake.set()

    def _respond(self, request_id: str, response: dict[str, JSON]) -> None:
        self._write_soon(control_success_line(request_id, response))

    async def _write_outbox(self) -> None:
        while True:
            await self._outbox_wake.wait()
            self._outbox_wake = trio.Event()
            while self._outbox:
                # Taken out only once stdin has it: a close waits while the outbox holds a
                # line, and `_write` yields (the lock) before the pipe counts it as pending.
                try:
                    await self._write(self._outbox[0])
                except (InvalidState, LimitExceeded) as exc:
                    log.info("claude.answer_unwritten", run=self.run_id, error=exc.message)
                    self._outbox.clear()
                else:
                    del self._outbox[0]

    # -- the API ----------------------------------------------------------------------------

    async def send(
        self, content: Any, message_id: str | None = None, hold: Hold = no_hold, first: bool = False
    ) -> ClaudeSent:
        """Queue a user message for the CLI's stdin and book it as a turn's; returns at once
        (the bytes waiting for the CLI are bounded: stdin_max_pending).

        `hold` is called just before the notices the message causes are posted
        (``claude.turn_started``, ``claude.state``), with nothing to wait for after it: the
        caller holds them back until its reply is out (rpc/claude.py), and no wait of the
        pump's can then be a wait for this call.  `first`: the start's prompt, which a close
        waits for (`_start`)."""
        self._check_open(first=first)
        if not self._ready.is_set():  # set once initialize is answered, timed out or failed
            await self._ready.wait()
            self._check_open(first=first)
        key = str(uuid.uuid4())
        line = user_line(content, key)
        if len(line) > self._run.stdin_bound:  # refused before it is booked as a turn's
            raise LimitExceeded(
                f"run {self.run_id}: a message of {len(line)} bytes is more than stdin takes",
                {"run": self.run_id, "limit": "stdin_max_pending", "value": self._run.stdin_bound},
            )
        self.turns.check(message_id)
        # From here on nothing yields: the line is queued and booked in one step, so the CLI
        # cannot echo it before it is booked, and nothing can fail after the booking.
        hold()
        self._queue(line)
        key, sent = self.turns.message(message_id, key)
        log.info("claude.message_sent", run=self.run_id, message=sent.message, turn=sent.turn)
        await trio.lowlevel.checkpoint()
        return sent

    async def interrupt(
        self, *, when_paused: bool = False, hold: Hold = no_hold, turn: int | None = None
    ) -> int:
        """Interrupt the running turn (`when_paused`: a paused one too); its number, once done.

        `turn`: only that turn, while it runs (an MCP call cancelled for its own message's
        turn must not interrupt another client's, nor the next one): InvalidParams otherwise.
        `hold` is called (by the pump) as the CLI's answer is read, before the notices that
        follow it (the turn's end) are posted: see `send`."""
        self._check_open(None if when_paused else "claude.interrupt")
        turns = self.turns
        if not turns.running:
            raise InvalidParams(f"run {self.run_id}: no turn is running", {"run": self.run_id})
        if turn is not None and not (turns.open and turns.turn == turn):
            raise InvalidParams(
                f"run {self.run_id}: turn {turn} is not running", {"run": self.run_id}
            )
        running = turns.interrupting = turns.turn if turns.open else turns.turn + 1
        await self.controls.request({"subtype": "interrupt"}, answered=hold)
        return running

    async def _watchdog_interrupt(self) -> None:
        try:
            if self.turns.open:
                await self.interrupt()
        except (InvalidParams, InvalidState, ControlTimeout) as exc:
            log.info("claude.watchdog_interrupt_failed", run=self.run_id, error=exc.message)

    async def set_model(self, model: str) -> JSON:
        self._check_open("claude.set_model")
        return await self.controls.request({"subtype": "set_model", "model": model})

    async def set_permission_mode(self, mode: str) -> JSON:
        self._check_open("claude.set_permission_mode")
        return await self.controls.request({"subtype": "set_permission_mode", "mode": mode})

    async def answer(
        self,
        request: str,
        behavior: Behavior,
        by: str,
        updated_input: dict[str, Any] | None = None,
        message: str | None = None,
        hold: Hold = no_hold,
    ) -> None:
        """A client's answer to a permission request (`hold`: as for `send`, before
        ``claude.permission_decided`` is posted)."""
        await self.broker.answer(request, behavior, by, updated_input, message, hold)

    async def close(self) -> None:
        """RESUME if paused, stdin EOF once what was queued for it is in, `close_grace` for
        that and to exit, then the ladder; until it is gone."""
        self._closing = True
        if self._run.state is RunState.PAUSED:  # a stopped CLI cannot read EOF and exit
            with contextlib.suppress(InvalidTransition, StillStopped):  # the ladder then ends it
                await self._run.resume()
        await self._opened.wait()  # the start's prompt goes before the EOF (control_timeout)
        with trio.move_on_after(self._settings.close_grace):
            # What was queued (messages, answers) goes before the EOF: closing the pipe drops
            # the lines still waiting for it.  A CLI that does not read: the ladder below.
            while self._run.stdin_open and (self._outbox or self._run.stdin_pending):
                await self._run.stdin_drained()
                await trio.lowlevel.checkpoint()  # the outbox's writer takes its next line
            if self._run.stdin_open:
                with contextlib.suppress(InvalidTransition):  # closed meanwhile: it is ending
                    await self._run.close_stdin()
            await self._run.wait()
            return
        log.info("claude.close_lingered", run=self.run_id, grace=self._settings.close_grace)
        await cancel_quietly(self._run, f"{CLOSED} within {self._settings.close_grace:g} s")
        await self._run.wait()

    def _check_open(self, control: str | None = None, *, first: bool = False) -> None:
        """InvalidState unless it takes input (and for a control, its CLI is not stopped);
        `first`: the start's prompt, which a close waits for."""
        if self._ended or (self._closing and not first) or not self._run.stdin_open:
            raise InvalidState(
                f"run {self.run_id}: the session is closing or over",
                {"run": self.run_id, "state": "ended" if self._ended else "closing"},
            )
        if control is not None and self._run.state is RunState.PAUSED:
            raise InvalidState(
                f"run {self.run_id} is paused: RESUME it before {control}",
                {"run": self.run_id, "state": "paused"},
            )
