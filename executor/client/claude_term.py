"""`ccx claude`: a live Claude session at the terminal.

Theory of operation
-------------------
Three tasks share one `Console`: the *shower* iterates the session's events and draws them
(the assistant's text on stdout as it arrives; ccx's own lines — turn summaries, permission
prompts, notes — on stderr); the *reader* reads our stdin a line at a time and decides what
each line is: the answer to the permission prompt on show (y / n [REASON]), a ccx command
(/model, /close, ...), or else a message for Claude; the *signal handler* turns Ctrl-C into
`claude.interrupt` while a turn runs, and into a fresh prompt while the session is idle (the
terminal has already discarded the half-typed line, as a shell's Ctrl-C does).

A fourth task, the *watcher*, pings the daemon (a WebSocket ping, which its reader answers
at once whatever its runs do): one left unanswered for the patience ccx gives a daemon to
answer a connection (a SIGSTOPped daemon: its kernel still holds the TCP connection, so
nothing else would ever fail) is said, and so is its answer when it comes; meanwhile Ctrl-C
leaves instead of sending an interrupt that would wait for that daemon too.

End of input (Ctrl-D) closes the session — except in `ccx claude attach`, where it leaves a
session that others may still use running. Either way ccx exits once the session has ended
(or once it has left it), so the prompt never lies about whether Claude is still there.

State comes only from the session's own notifications (claude.state, claude.turn_*,
claude.permission_*), replayed on attach like everything else: what was pending when we
joined is asked once the replay is over. Permission requests are keyed by id, so a request
re-sent to a joining viewer is asked once.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import attrs
import trio

from cc_executor.executor.client import claude_words as words
from cc_executor.executor.client.claude import CLAUDE_EVENTS, ClaudeSession, SessionEvent
from cc_executor.executor.client.claude_words import HELP, input_text, turn_line
from cc_executor.executor.client.config import CommandLineConfig
from cc_executor.executor.client.connection import Connection
from cc_executor.executor.client.endings import shutdown_message
from cc_executor.executor.client.errors import ConnectionLost, ServerError
from cc_executor.executor.client.events import (
    ClaudeMessageTaken,
    ClaudePermissionDeadline,
    ClaudePermissionDecided,
    ClaudePermissionRequest,
    ClaudeStateChanged,
    ClaudeTurnEnded,
    ClaudeTurnStarted,
    Completed,
    Gap,
    Output,
)
from cc_executor.executor.client.exits import ExitStatus
from cc_executor.executor.client.parsers import Target
from cc_executor.executor.client.terminal import Terminal
from cc_executor.protocol.claude import Init, Replayed, ToolUse, UserText
from cc_executor.protocol.claude.text import AssistantTextStream

PROMPT = b"> "
ASK = b"allow? [y/n] "
# Seconds between pings of the daemon while it answers, and the extra moment given to a pong
# once the patience is out (ccx itself may have been stopped with the pong on its way).
PING_INTERVAL = 1.0
PONG_GRACE = 0.5


@attrs.define
class Console:
    """One session as this terminal shows it, and what the user is being asked."""

    session: ClaudeSession
    term: Terminal
    target: Target
    mode: Literal["start", "attach"]
    connection_id: str  # ours, as the daemon names it in `by` ("client:<identity>/<id>")
    read_chunk: int = attrs.field(default=CommandLineConfig().stdin_chunk)  # bytes per read
    replay_until: int = 0  # attach: events up to this seq are the past, shown again
    state: str = "idle"
    turn: int = 0  # the running (or last) turn
    turns: int = 0
    last_ended: int = 0  # the last turn that ended
    cost: float = 0.0
    pending: dict[str, ClaudePermissionRequest] = attrs.field(factory=dict)
    asked: str | None = None  # the request whose prompt is on show
    prompted: bool = False  # the "> " prompt is on show
    mid_text: bool = False  # the assistant's text did not end with a newline
    replayed: bool = False  # the CLI replays a user message: its text follows
    echoed: bool = False  # our /model: the CLI's echo of it is not shown again
    paused: bool = False  # the session is paused (by anyone): said once, and its resume
    closing: bool = False  # we closed the session (Ctrl-D, /close)
    left: bool = False  # we left it running (attach's Ctrl-D, /detach)
    unanswered: bool = False  # the daemon is not answering (said once, and when it answers)
    abandoned: bool = False  # Ctrl-C while the daemon did not answer: we left without it
    handling: bool = False  # a typed line is being acted on (its request may be waiting)
    reconnecting: bool = False  # the socket went under a durable session: a new one is sought
    claude_session: str | None = None  # the Claude session id, once a turn has ended
    claude_cwd: str | None = None  # where its CLI runs (its init), for `--resume`
    sent: deque[str] = attrs.field(factory=lambda: deque(maxlen=16))  # our messages' text
    text: AssistantTextStream = attrs.field(factory=AssistantTextStream)
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    @property
    def replaying(self) -> bool:
        return self.session.seq < self.replay_until

    @property
    def over(self) -> bool:  # joined after it ended: its past only, nothing to ask or type
        return self.session.run.info.get("state") == "completed"

    # -- drawing ---------------------------------------------------------------------------

    async def _end_text(self) -> None:
        if self.mid_text:
            await self.term.write("stdout", b"\n")
            self.mid_text = False

    async def say(self, line: str) -> None:
        """One line of ccx's own (after the assistant's text, never inside it)."""
        await self._end_text()
        self.term.message(line)
        self.prompted = False

    async def show_text(self, text: str) -> None:
        if self.prompted:
            await self.term.write("stderr", b"\n")
            self.prompted = False
        await self.term.write("stdout", text.encode())
        self.mid_text = not text.endswith("\n")

    async def prompt(self) -> None:
        """Ask the next pending permission request, or show "> " when the session waits."""
        if self.replaying or self.closing or self.left or self.over:
            return
        if self.asked is None and self.pending:
            request = next(iter(self.pending.values()))
            self.asked = request.request
            await self.say(
                f"ccx: Claude wants to use {request.tool}: "
                f"{input_text(request.tool, request.input)}  (request {request.request})"
            )
            await self.term.write("stderr", ASK)
            return
        if self.asked is None and self.state == "idle" and not self.prompted:
            await self._end_text()
            await self.term.write("stderr", PROMPT)
            self.prompted = True

    # -- the session's events --------------------------------------------------------------

    async def show(self, event: SessionEvent) -> None:
        match event:
            case ClaudeStateChanged(state=state):
                self.state = state
                if (state == "paused") != self.paused:
                    self.paused = state == "paused"
                    if not self.replaying:
                        await self.say(words.paused_line(self.paused, self.target, self.session.id))
                if state == "idle":
                    await self.prompt()
            case ClaudeTurnStarted(turn=turn):
                self.turn = turn
            case ClaudeMessageTaken(message=message, turn=turn) if not self.replaying:
                await self.say(f"ccx: message {message} taken by the running turn {turn}")
            case ClaudeTurnEnded() as ended:
                if isinstance(session_id := ended.result.get("session_id"), str):
                    self.claude_session = session_id  # a turn is on record: resumable
                self.turns += 1
                self.last_ended = max(self.last_ended, ended.turn)
                cost = ended.result.get("cost_usd")
                if isinstance(cost, int | float):
                    self.cost += cost
                await self.say(turn_line(ended))
                await self.prompt()
            case ClaudePermissionRequest(request=request) if request not in self.pending:
                self.pending[request] = event
                await self.prompt()
            case ClaudePermissionDeadline(request=request, expires_at=expires_at):
                if (posted := self.pending.get(request)) is not None:  # moved by a pause
                    self.pending[request] = attrs.evolve(posted, expires_at=expires_at)
            case ClaudePermissionDecided(request=request, behavior=behavior, by=by):
                self.pending.pop(request, None)
                if self.asked == request:
                    self.asked = None
                ours = by.startswith("client:") and by.endswith("/" + self.connection_id)
                if not ours and not self.replaying:
                    await self.say(words.decided_line(request, behavior, by))
                await self.prompt()
            case ToolUse(name=name, input=value, parent_tool_use_id=None):
                await self.say(f"ccx: {name}: {input_text(name, value)}")
            case Init(cwd=cwd) if cwd:
                self.claude_cwd = cwd
            case Replayed():
                self.replayed = True  # the next user text is a message someone sent
            case UserText(text=text, parent_tool_use_id=None) if self.replayed:
                self.replayed = False
                if (output := words.local_command_output(text)) is not None:  # e.g. of a /model
                    if not self.echoed:  # not our /model's: ours said it already
                        await self.say(f"ccx: {output}")
                        await self.prompt()
                    self.echoed = False
                elif text in self.sent:
                    self.sent.remove(text)  # ours, on the screen already
                else:
                    await self.say(f"» {text}")  # someone else's (or ours, replayed)
            case Output(stream="stderr", data=data):
                await self.say(data.decode("utf-8", "replace").rstrip("\n"))
            case Gap(seq=seq, reason=reason):
                await self.say(f"ccx: the session's record lacks events from seq {seq} ({reason})")
            case Completed():
                await self._end_text()
            case _ if isinstance(event, CLAUDE_EVENTS):
                piece = self.text.feed(event)
                if piece:
                    await self.show_text(piece)
        if not self.replaying and self.session.seq == self.replay_until and self.replay_until:
            self.replay_until = 0  # the past is shown: from now on, ask and prompt
            await self.prompt()

    # -- our input -------------------------------------------------------------------------

    async def line(self, line: str) -> None:
        """One line the user typed."""
        self.handling = True
        try:
            await self._line(line)
        finally:
            self.handling = False

    async def _line(self, line: str) -> None:
        self.term.typed()
        self.prompted = False
        text = line.strip()
        if self.asked is not None:
            await self._answer(self.asked, text)
        elif text.startswith("/") and text.split()[0] in COMMANDS:
            await COMMANDS[text.split()[0]](self, text.partition(" ")[2].strip())
        elif text:
            self.sent.append(text)
            try:
                sent = await self.session.send(text)
            except (ServerError, ConnectionLost) as exc:
                await self.say(f"ccx: not sent: {exc}")
                if isinstance(exc, ConnectionLost):
                    return  # no prompt: the shower says what became of the session
            else:
                if sent.disposition == "queued":
                    await self.say(f"ccx: queued behind turn {sent.turn} (message {sent.message})")
                if sent.turn > self.last_ended:
                    self.state = "running"  # until the session says otherwise: no prompt
        await self.prompt()

    async def _answer(self, request: str, text: str) -> None:
        word, _, reason = text.partition(" ")
        if word.lower() in ("y", "yes"):
            behavior: Literal["allow", "deny"] = "allow"
        elif word.lower() in ("n", "no"):
            behavior = "deny"
        else:
            await self.say("ccx: answer y or n (n REASON tells Claude why)")
            await self.term.write("stderr", ASK)
            return
        self.asked = None
        try:
            await self.session.answer_permission(
                request, behavior, message=(reason or "denied at the terminal")
                if behavior == "deny" else None,
            )  # fmt: skip
        except ServerError as exc:  # decided meanwhile: by whom is in the message
            await self.say(f"ccx: {exc}")
        self.pending.pop(request, None)

    async def interrupt(self) -> None:
        """Ctrl-C: interrupt the running turn; at the prompt, a new prompt."""
        if self.closing:  # stdin is closed: no interrupt reaches the CLI; end it now
            await self.say(f"ccx: ending session {self.session.id} now")
            with contextlib.suppress(ServerError):  # over meanwhile
                await self.session.cancel()
        elif self.state in ("running", "requires_action"):
            await self.say(f"ccx: interrupting turn {self.turn}")
            with contextlib.suppress(ServerError):  # it ended meanwhile
                await self.session.interrupt()
        else:
            await self.term.write("stderr", b"\n")
            self.prompted = False
            if self.asked is not None:
                await self.term.write("stderr", ASK)
            else:
                await self.prompt()

    async def abandon(self) -> None:
        """Ctrl-C while the daemon does not answer: leave without its answer (exit 130)."""
        self.abandoned = True
        await self.say(words.abandoned_line(self.target, self.session, self.reconnecting))
        self.scope.cancel()

    def resume_hint(self) -> str:
        """`; ccx claude --resume UUID continues its conversation`, once there is one."""
        if self.claude_session is None:
            return ""
        return words.resume_hint(self.target, self.claude_session, self.claude_cwd)

    async def end_of_input(self) -> None:
        if self.mode == "attach":
            await self.leave()
        else:
            await self.close()

    async def close(self, _: str = "") -> None:
        self.closing = True
        await self.say(f"ccx: closing session {self.session.id}")
        await self.session.close()

    async def leave(self, _: str = "") -> None:
        if not self.session.durable:
            await self.say("ccx: this session is not durable: it ends with ccx (/close ends it)")
            return
        self.left = True
        await self.say(
            f"ccx: left session {self.session.id}; it goes on "
            f"({self.target.ccx('claude', 'attach', self.session.id)} rejoins it)"
        )
        with contextlib.suppress(ServerError, ConnectionLost):
            await self.session.detach()
        self.scope.cancel()


async def _model(console: Console, argument: str) -> None:
    if not argument:
        await console.say("ccx: /model NAME")
        return
    try:
        console.echoed = True
        await console.session.set_model(argument)
        await console.say(f"ccx: model {argument} from the next request on")
    except ServerError as exc:
        await console.say(f"ccx: {exc}")


async def _mode(console: Console, argument: str) -> None:
    try:
        await console.session.set_permission_mode(argument)
        await console.say(f"ccx: permission mode {argument}")
    except ServerError as exc:
        await console.say(f"ccx: {exc}")


async def _status(console: Console, _: str) -> None:
    status = await console.session.status()
    claude = status.claude or {}
    await console.say(
        f"ccx: session {status.run} {claude.get('state', status.state)}, "
        f"{claude.get('turns', console.turns)} turn(s), ${claude.get('cost_usd') or 0:.4f}, "
        f"{len(console.pending)} request(s) pending"
    )


COMMANDS: dict[str, Callable[[Console, str], Awaitable[None]]] = {
    "/model": _model,
    "/mode": _mode,
    "/interrupt": lambda console, _: console.interrupt(),
    "/status": _status,
    "/detach": Console.leave,
    "/close": Console.close,
    "/help": lambda console, _: console.say(HELP),
}


async def _read_lines(console: Console) -> None:
    """Our stdin, a line at a time, until end of file."""
    pending = b""
    while True:
        data = await trio.to_thread.run_sync(os.read, 0, console.read_chunk, abandon_on_cancel=True)
        if not data:
            with contextlib.suppress(ConnectionLost):  # the shower says it, once
                await console.end_of_input()
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            with contextlib.suppress(ConnectionLost):  # (a durable session's: reconnected)
                await console.line(line.decode("utf-8", "replace"))


async def _signals(console: Console, signals: Any) -> None:
    """Ctrl-C: an interrupt (one at a time), or — while the daemon does not answer, whose
    reply the interrupt would wait for — leaving at once."""
    busy = False

    async def interrupt() -> None:
        nonlocal busy
        busy = True
        try:
            with contextlib.suppress(ConnectionLost):  # the shower says it, once
                await console.interrupt()
        finally:
            busy = False

    async with trio.open_nursery() as nursery:
        async for _ in signals:
            if console.unanswered:
                await console.abandon()
            elif not busy:
                nursery.start_soon(interrupt)


async def _ping_then_set(console: Console, conn: Connection, answered: trio.Event) -> None:
    """Until the daemon answers a ping (across a reconnect: on the socket after it)."""
    while True:
        try:
            await conn.ping()
            console.reconnecting = False
            answered.set()
            return
        except ConnectionLost:  # reconnecting (a durable session), or over: the shower says
            console.reconnecting = True
            await trio.sleep(PING_INTERVAL)


async def _watch_daemon(console: Console, conn: Connection, patience: float) -> None:
    """Say so when the daemon leaves us without an answer for `patience` seconds (the time
    ccx gives it to answer a connection), and again when it answers; meanwhile Ctrl-C leaves.

    The ping goes on in its own task while the clock runs: a pong that arrived while ccx
    itself was stopped (Ctrl-Z) is still read, within `PONG_GRACE`, and says nothing."""
    while True:
        answered = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ping_then_set, console, conn, answered)
            with trio.move_on_after(patience):
                await answered.wait()
            with trio.move_on_after(PONG_GRACE):
                await answered.wait()
            if not answered.is_set():
                console.unanswered = True
                await console.say(
                    words.unanswered_line(
                        console.target, console.session, patience, console.reconnecting
                    )
                )
                await answered.wait()
                console.unanswered = False
                await console.say(f"ccx: the daemon at {console.target.url} answers again")
                if console.asked is not None:
                    await console.term.write("stderr", ASK)  # the question on show still is
                elif not console.handling:  # (a line waiting for its reply prompts after it)
                    await console.prompt()
        await trio.sleep(PING_INTERVAL)


async def _show_all(console: Console) -> Completed:
    completed: Completed | None = None
    async for event in console.session.events():
        await console.show(event)
        if isinstance(event, Completed):
            completed = event
    assert completed is not None
    return completed


async def _tell_shutdown(console: Console, conn: Connection) -> None:
    notice = await conn.wait_shutdown()
    await console.say(shutdown_message(console.session.id, notice.grace))


async def run_console(console: Console, conn: Connection, patience: float) -> int:
    """Show the session and take our input until it ends (or we leave it); the exit status.

    `patience`: seconds without an answer from the daemon before ccx says it is not
    answering (ClientConfig.connect_timeout: what ccx gives it to answer a connection)."""
    completed: Completed | None = None
    with trio.open_signal_receiver(signal.SIGINT) as signals, console.scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_signals, console, signals)
            if not console.over:
                nursery.start_soon(_read_lines, console)
                nursery.start_soon(_watch_daemon, console, conn, patience)
            nursery.start_soon(_tell_shutdown, console, conn)
            await console.prompt()
            try:
                completed = await _show_all(console)
            except ConnectionLost as exc:
                if not console.left:  # (leaving ends our stream of it, too)
                    await console.say(
                        words.lost_line(exc, console.target, console.session)
                        + ("" if console.session.durable else console.resume_hint())
                    )
            finally:
                nursery.cancel_scope.cancel()
    if console.abandoned:
        return ExitStatus.INTERRUPTED
    if console.left:
        return 0
    if completed is None:
        return ExitStatus.FAILED
    summary = f"{console.turns} turn(s), ${console.cost:.4f}"
    if console.closing:
        await console.say(f"ccx: session {console.session.id} closed ({summary})")
        return 0
    why = completed.reason or completed.outcome
    await console.say(
        f"ccx: session {console.session.id} ended: {why} ({summary}){console.resume_hint()}"
    )
    return ExitStatus.FAILED
