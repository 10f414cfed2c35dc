"""The MCP view of a run: a bounded log of its recent events, tails, pause state, completion.

Theory of operation: MCP clients do not take a stream of notifications; they want a result,
progress while they wait, and pages of output on request.  So every run an MCP call starts has
a ``RunLog``: a bounded in-memory view (recent output events, the tail of each stream, pause
state, completion) with an event that fires on every change.  A run that is not durable has it
as its sink (start.py); a durable run's pump writes its journal, and a follower task in the
daemon's nursery (``follow_journal``) reads the journal into the log, parsing a Claude run's
stdout as the keeper's watcher does, so the log outlives the client too.  A Claude session's
log also feeds its SessionView (sessionview.py).  ``read_output`` of a
durable run reads its journal (the whole history); of another run, what its log still holds
(``output_buffer_bytes``).
"""

from __future__ import annotations

import base64
import time
from collections import deque
from collections.abc import Sequence
from typing import Literal

import orjson
import structlog
import trio

from cc_executor.executor.config.mcp import McpConfig
from cc_executor.executor.mcp.sessionview import SessionView
from cc_executor.executor.runs.attach import stream_json_events
from cc_executor.executor.runs.durable import DurableRun
from cc_executor.executor.runs.live import LiveRun
from cc_executor.executor.runs.wire import completion
from cc_executor.protocol import JSON
from cc_executor.protocol.claude import ClaudeEvent, Result, StreamJsonParser
from cc_executor.protocol.server_codec import completion_fields
from cc_executor.supervision import (
    Completed,
    CompletedEvent,
    Note,
    Output,
    RunState,
    SequencedEvent,
    StateEvent,
)
from cc_executor.supervision.journal import Gap, JournalFault

log = structlog.get_logger()

Stream = Literal["stdout", "stderr"]


def text_or_base64(data: bytes) -> dict[str, JSON]:
    """`{"data": text}` when `data` is UTF-8, else `{"data": base64, "encoding": "base64"}`."""
    try:
        return {"data": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"data": base64.b64encode(data).decode("ascii"), "encoding": "base64"}


def readable(data: bytes) -> str:
    """Text for humans (progress messages, text content): invalid bytes shown as U+FFFD.

    Structured results and read_output carry the lossless form."""
    return data.decode("utf-8", errors="replace")


def tail_start(data: bytes) -> bytes:
    # A tail cut at a byte boundary may start inside a UTF-8 sequence: drop the stray bytes.
    start = 0
    while start < min(3, len(data)) and 0x80 <= data[start] < 0xC0:
        start += 1
    return data[start:]


class RunLog:
    """The MCP view of one run: bounded recent events, tails, pause state, completion."""

    def __init__(self, config: McpConfig) -> None:
        self._config = config
        self.events: deque[Output | StateEvent | CompletedEvent | Note | Gap] = deque()
        self._held = 0  # bytes of output in `events`
        self.first_seq = 1  # the oldest seq still held (older ones were dropped)
        self.last_seq = 0
        self.tails: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = False  # a tail lost its beginning
        self.latest = b""  # the latest output chunk, for progress messages
        self.paused = False
        self.completed: Completed | None = None
        self.gap: Gap | None = None
        self.updated_wall = time.time()
        self.done = trio.Event()
        self._changed = trio.Event()
        self.claude_result: Result | None = None
        self.claude_session: str | None = None
        # A Claude session run's turns, messages and permissions (sessionview.py).
        self.session: SessionView | None = None

    async def deliver(
        self, live: LiveRun, event: SequencedEvent, claude: Sequence[ClaudeEvent]
    ) -> None:
        """The sink of a run started by an MCP call (see start.py's ``Sink``)."""
        self.record(event, claude)
        await trio.lowlevel.checkpoint()

    async def note(self, live: LiveRun, event: ClaudeEvent) -> None:
        pass  # a watchdog firing shows in the run's outcome

    def record(self, event: SequencedEvent | Gap, claude: Sequence[ClaudeEvent] = ()) -> None:
        """Add one event (and the Claude events it completes) to the log."""
        if isinstance(event, Gap):
            self.gap = event
        else:
            self.last_seq = event.seq
        if isinstance(event, Output):
            self._output(event)
        elif isinstance(event, StateEvent):
            self.paused = event.state is RunState.PAUSED
            self.updated_wall = time.time()
        elif isinstance(event, CompletedEvent):
            self.completed = event.completed
            self.updated_wall = time.time()
            self.done.set()
        self._claude(claude)
        if self.session is not None and not isinstance(event, Gap):
            self.session.record(event, claude)
        self.events.append(event)
        while self._held > self._config.output_buffer_bytes and len(self.events) > 1:
            dropped = self.events.popleft()
            if isinstance(dropped, Output):
                self._held -= len(dropped.data)
            if not isinstance(dropped, Gap):
                self.first_seq = dropped.seq + 1
        self._changed.set()
        self._changed = trio.Event()

    def _output(self, event: Output) -> None:
        self._held += len(event.data)
        self.latest = event.data
        tail = self.tails[event.stream]
        tail += event.data
        limit = self._config.result_tail_bytes
        if len(tail) > limit:
            del tail[: len(tail) - limit]
            self.truncated = True

    def _claude(self, events: Sequence[ClaudeEvent]) -> None:
        for typed in events:
            if isinstance(typed, Result) and self.claude_result is None:
                self.claude_result = typed
            session_id = getattr(typed, "session_id", None)
            if isinstance(session_id, str) and self.claude_session is None:
                self.claude_session = session_id

    async def wait_changed(self, seen_seq: int) -> None:
        """Return once an event after `seen_seq` is noted, or the run is complete."""
        while self.last_seq <= seen_seq and not self.done.is_set():
            await self._changed.wait()

    def page(self, page: Page, from_seq: int) -> int:
        """Fill `page` with the events after `from_seq` still held; the seq to continue after."""
        last = from_seq
        for event in self.events:
            if isinstance(event, Gap) or event.seq <= from_seq:
                continue
            if not page.add(event):
                break
            last = event.seq
        return last


class Page:
    """A read_output page being filled: about `max_bytes` of output data (at least one event)
    and at most `room` bytes of events as JSON; with `binary`, output as base64 whatever it is
    (the caller's way to make one event fit: JSON escapes a control character in six bytes)."""

    def __init__(self, max_bytes: int, room: int, *, binary: bool = False) -> None:
        self.events: list[JSON] = []
        self._max_bytes = max_bytes
        self._room = room
        self._binary = binary
        self._data = 0
        self._json = 0

    def add(self, event: Output | StateEvent | CompletedEvent | Note | Gap) -> bool:
        """Add `event` if it fits the page; False (and the page is full) if it does not."""
        data = len(event.data) if isinstance(event, Output) else 0
        shown = event_json(event)
        if self._binary and isinstance(event, Output):
            shown = {
                "seq": event.seq,
                "type": "output",
                "stream": event.stream,
                "data": base64.b64encode(event.data).decode("ascii"),
                "encoding": "base64",
            }
        size = len(orjson.dumps(shown))
        if self.events and (self._data + data > self._max_bytes or self._json + size > self._room):
            return False
        self.events.append(shown)
        self._data += data
        self._json += size
        return True


def event_json(event: Output | StateEvent | CompletedEvent | Note | Gap) -> JSON:
    """One run event as read_output shows it (a Claude session's notice: its method as
    `type`, with its params)."""
    match event:
        case Note(seq=seq, name=name, data=data):
            return {**orjson.loads(data), "seq": seq, "type": name}
        case Output(seq=seq, stream=stream, data=data):
            return {"seq": seq, "type": "output", "stream": stream, **text_or_base64(data)}
        case StateEvent(seq=seq, state=state):
            word = "paused" if state is RunState.PAUSED else "resumed"
            return {"seq": seq, "type": word}
        case CompletedEvent(seq=seq, completed=done):
            return {
                "seq": seq,
                "type": "completed",
                **completion_fields(completion(done.outcome, None, None)),
            }
        case Gap(seq=seq, reason=reason):
            return {"seq": seq, "type": "gap", "reason": reason}


async def follow_journal(durable: DurableRun, run_log: RunLog, claude_max_line: int | None) -> None:
    """Read a durable run's journal into its RunLog until the completion (daemon's nursery);
    `claude_max_line`: parse stdout as stream-json (a Claude run), with this line limit."""
    parser = None if claude_max_line is None else StreamJsonParser(claude_max_line)
    try:
        with durable.journal.cursor(0) as cursor:
            while (entry := await cursor.read()) is not None:
                if isinstance(entry, JournalFault):
                    continue  # the run's status says it (journal.error)
                run_log.record(entry, stream_json_events(parser, entry))
                if isinstance(entry, CompletedEvent):
                    return
    except OSError as exc:
        # The journal cannot be opened or read (EMFILE, EIO): the log says what it lost, and
        # the completion, which the journal keeps in memory, still ends whoever waits on it.
        log.warning("mcp.journal_unreadable", path=str(durable.journal.path), error=str(exc))
        run_log.record(Gap(run_log.last_seq + 1, f"journal unreadable: {exc.strerror or exc}"))
        await durable.done.wait()
        if durable.journal.completed is not None:
            run_log.record(durable.journal.completed)
        else:
            run_log.done.set()


def read_journal(durable: DurableRun, page: Page, from_seq: int) -> int:
    """Fill `page` with a durable run's events after `from_seq`, from its journal; as
    `RunLog.page`."""
    last = from_seq
    with durable.journal.cursor(from_seq) as cursor:
        while (entry := cursor.read_nowait()) is not None:
            if isinstance(entry, JournalFault):
                continue
            if not page.add(entry):
                break
            if not isinstance(entry, Gap):
                last = entry.seq
    return last


def halve_longest(places: Sequence[tuple[dict[str, JSON], str]]) -> bool:
    """Halve the longest string found at `places` (a dict and its key), keeping its end;
    False when every one is empty (or absent)."""
    texts = [(holder, key) for holder, key in places if isinstance(holder.get(key), str)]
    texts = [(holder, key) for holder, key in texts if holder[key]]
    if not texts:
        return False
    holder, key = max(texts, key=lambda place: len(str(place[0][place[1]])))
    value = str(holder[key])
    holder[key] = value[len(value) // 2 :] if len(value) > 1 else ""
    return True


ARG_SHOWN = 1024  # characters of each argument a result shows when its argv is too long


def shorten_argv(structured: dict[str, JSON]) -> bool:
    """Cut each argument of `structured["argv"]` to its first ARG_SHOWN characters (and say
    `argv_truncated: true`), for a result that would not fit one frame; False if none was
    longer."""
    argv = structured.get("argv")
    if not isinstance(argv, list):
        return False
    if not any(isinstance(arg, str) and len(arg) > ARG_SHOWN for arg in argv):
        return False
    structured["argv"] = [
        arg[:ARG_SHOWN] + "…" if isinstance(arg, str) and len(arg) > ARG_SHOWN else arg
        for arg in argv
    ]
    structured["argv_truncated"] = True
    return True
