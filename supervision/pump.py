"""The output pump: numbers a run's events and frames its output for a sink.

Theory of operation: one pump per run reads the runner's channel and calls `deliver` with
events numbered 1, 2, 3... without gaps.  Output is framed per stream: whole lines are kept
together and batched (every chunk already waiting in the channel is coalesced, up to
max_chunk), a partial line waits at most flush_delay for the rest of it, and a line longer than
max_chunk is cut (see framing.py).  Buffers are bounded by max_chunk + one read.  Pending output
is flushed before a StateChanged or Completed is delivered, so output never follows the state
change it preceded and Completed is the last event.  If the sink raises `SinkClosed` (the
client went away), the pump switches to discard mode and keeps draining the channel, so a dead
sink never blocks the runner; any other exception from a sink is a bug and propagates to the
pump's owner.  The concatenated Output data of a stream is exactly what the child wrote.
A partial line is delivered by time only while the pipe is empty (see `unread`).  A sink that
batches (the journal) gets an `idle` call once the channel has been empty for `batch_delay`,
so a batch never waits for more output that is not coming, yet a steady stream is written in
batches, not one write per event.

A chunk may also come straight from the pipe's reader (`take`), without the channel, when the
pump is parked: no note, no event on its way, no other delivery, a sink that does not batch (a
batch is timed by the pump's waits).  The reader then delivers the chunk on its own task — a
task switch sooner, what a child writing a line at a time pays in latency — and such a reader
waits for the pump to park before it reads (`until_takes`), so a stalled sink holds only the
chunk being delivered, not reads made ahead of it: what a stalled stream costs then follows
one read, not the channel's capacity.  A chunk that ends a line and finds nothing buffered
before it is delivered as it was read, without a copy.  The order is kept: while a reader
delivers, the pump does nothing else (whatever wakes it waits until the delivery is over), and
a reader that finds the pump busy after all (it had to wait for the pipe meanwhile) uses the
channel.  A reader that delivers is not reading, which holds the child as a full channel would.
A sink that fails in a reader's delivery fails the pump's own `run`, where its owner decides,
not the reader.

The run's owner may `post` notes (a Claude session's turn boundaries and permission requests):
they are numbered in the same sequence, after the event being delivered when they were posted
(so a note derived from a line follows that line) or as soon as the pump is free; `closing`
is called just before the Completed event is numbered, so what the owner posts then still
precedes it.  Nothing is numbered after Completed: a later note is dropped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial

import structlog
import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.errors import SinkClosed
from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Note,
    Output,
    OutputChunk,
    RunEvent,
    SequencedEvent,
    StateChanged,
    StateEvent,
    Stream,
)
from cc_executor.supervision.framing import take_frames, take_partial

log = structlog.get_logger()

STREAMS: tuple[Stream, ...] = ("stdout", "stderr")


def _note(name: str, data: bytes, seq: int) -> Note:
    return Note(seq=seq, name=name, data=data)


async def _deliver_after_end(event: SequencedEvent) -> None:
    raise RuntimeError("the pump has ended")


class OutputPump:
    """Drains one run's event channel into `deliver`, numbered and framed."""

    def __init__(
        self,
        events: trio.MemoryReceiveChannel[RunEvent],
        deliver: Callable[[SequencedEvent], Awaitable[None]],
        config: SupervisionConfig,
        unread: Callable[[Stream], int] | None = None,
        idle: Callable[[], Awaitable[None]] | None = None,
        closing: Callable[[], None] | None = None,
    ) -> None:
        """`unread(stream)` tells how many bytes of a stream the source still holds unread
        (``Run.unread_bytes``): a partial line is delivered only once that is zero, so a line
        is split by time only when the child has really stopped writing mid-line, never
        because this event loop was busy.  `idle()` is awaited whenever the pump is about to
        wait for the runner (a batching sink writes its batch then)."""
        self._events = events
        self._idle = idle
        self._unread = unread
        self._deliver = deliver
        self._config = config
        self._closing = closing
        self.last_seq = 0
        self._notes: deque[tuple[str, bytes]] = deque()
        self._draining_notes = False
        self._waiting: trio.CancelScope | None = None  # the wait for the runner's next event
        self._direct = False  # a reader is delivering a chunk itself (take)
        self._direct_over: trio.Event | None = None  # set when that delivery is over
        self._failure: Exception | None = None  # what a reader's delivery raised
        self._takers = trio.lowlevel.ParkingLot()  # readers waiting for the pump to park
        self._ended = False  # run() is over: nothing is taken any more
        self._discarding = False
        self._completed = False
        self._buffers: dict[Stream, bytearray] = {s: bytearray() for s in STREAMS}
        # When the partial line now buffered for a stream started waiting (None: no partial).
        self._pending_since: dict[Stream, float | None] = {s: None for s in STREAMS}

    def post(self, name: str, data: bytes) -> None:
        """Number and deliver a note (see the module docstring); never blocks."""
        if self._completed or self._discarding:
            return
        self._notes.append((name, data))
        if self._waiting is not None:
            self._waiting.cancel()

    def _may_take(self) -> bool:
        """Whether readers deliver their chunks themselves at all, now or later."""
        return (
            self._idle is None  # a batching sink keeps its batches: the pump times them
            and not self._discarding
            and not self._completed
            and not self._ended
        )

    def can_take(self) -> bool:
        """Whether a reader may deliver its chunk itself now (see the module docstring): the
        pump is parked in its receive — the channel's one receiver waiting, not handed an event
        it has yet to see — with no note waiting and no other delivery in progress."""
        return (
            self._may_take()
            and not self._direct
            and not self._notes
            and self._events.statistics().tasks_waiting_receive > 0
        )

    async def until_takes(self) -> bool:
        """Return once `can_take()` is true, or once chunks no longer go to the pump directly
        (a reader then uses the channel); True if that meant waiting.  Not a checkpoint when
        it returns at once."""
        waited = False
        while self._may_take() and not self.can_take():
            waited = True
            await self._takers.park()
        return waited

    def _wake_takers(self) -> None:
        if self._takers:
            self._takers.unpark_all()

    async def take(self, chunk: OutputChunk) -> None:
        """Deliver `chunk` on the caller's task; only right after `can_take()` said so."""
        self._direct = True
        try:
            await self._handle(chunk)
        except Exception as exc:
            # A bug in the sink: the pump's run raises it, where its owner contains it.
            self._failure = exc
            self._discarding = True
        finally:
            self._direct = False
            over, self._direct_over = self._direct_over, None
            if over is not None:
                over.set()
            # The pump's wait was computed before this chunk: let it look again if a partial
            # line now waits for its flush, or the delivery failed.
            if self._waiting is not None and (
                self._failure is not None or any(self._buffers.values())
            ):
                self._waiting.cancel()
            self._wake_takers()

    async def _settle(self) -> None:
        """Wait until a reader's delivery in progress is over; raise what it raised."""
        while self._direct:
            if self._direct_over is None:
                self._direct_over = trio.Event()
            await self._direct_over.wait()
        if self._failure is not None:
            raise self._failure

    @property
    def discarding(self) -> bool:
        """True once `deliver` has failed: events are drained and dropped from then on."""
        return self._discarding

    async def run(self) -> None:
        """Pump until the runner closes the channel."""
        try:
            with self._events:  # closed without aclose's checkpoint
                while True:
                    event = await self._next_event()
                    await self._settle()
                    if event is None:
                        break
                    await self._handle(event)
                await self._flush(final=True)
        finally:
            self._ended = True
            self._wake_takers()
            # An ended pump holds none of its callbacks: they reach back to the run that holds
            # the pump (its sink, its connection), and what they hold is freed with the run
            # instead of waiting for the cyclic collector.
            self._deliver = _deliver_after_end
            self._idle = self._closing = self._unread = None

    async def _next_event(self) -> RunEvent | None:
        """The next event; meanwhile, deliver partial lines whose wait is over."""
        while True:
            await self._settle()
            if self._notes:
                await self._drain_notes()
            deadline = self._flush_deadline()
            if trio.current_time() >= deadline:
                await self._flush_due()
                continue
            try:
                return self._events.receive_nowait()
            except trio.EndOfChannel:
                return None
            except trio.WouldBlock:
                pass
            if self._idle is not None and not self._discarding:
                # A batching sink writes when output pauses, not after every event: the next
                # chunk usually follows within batch_delay, and joins the same batch.
                pause = min(deadline, trio.current_time() + self._config.batch_delay)
                with trio.move_on_at(pause) as self._waiting:
                    return await self._receive()
                await self._settle()
                if self._notes or trio.current_time() >= deadline:
                    continue  # a note was posted, or a partial line is due
                idle = self._idle
                await self._to_sink(idle)
            if self._notes:
                continue  # posted while the sink was idle
            with trio.move_on_at(deadline) as self._waiting:
                return await self._receive()

    async def _receive(self) -> RunEvent | None:
        """The runner's next event (None: the channel is closed)."""
        self._wake_takers()  # parked from here on: a waiting reader may deliver
        try:
            return await self._events.receive()
        except trio.EndOfChannel:
            return None
        finally:
            self._waiting = None

    async def _handle(self, event: RunEvent) -> None:
        if self._discarding or self._completed:
            return
        barrier: StateChanged | Completed | None = None
        if isinstance(event, OutputChunk):
            if self._whole(event):
                await self._send_output(event.stream, event.data)
                return
            barrier = self._coalesce(event)
            await self._frame()
        else:
            barrier = event
        if barrier is None:
            return
        await self._flush(final=True)
        if isinstance(barrier, StateChanged):
            state = barrier.state
            await self._send(lambda seq: StateEvent(seq=seq, state=state))
        else:
            if self._closing is not None:
                self._closing()
            await self._drain_notes()
            self._completed = True
            completed = barrier
            await self._send(lambda seq: CompletedEvent(seq=seq, completed=completed))

    def _whole(self, chunk: OutputChunk) -> bool:
        """Whether `chunk` is a frame as it was read: it ends a line, fits one event, and no
        output of its stream is buffered before it or waiting in the channel after it."""
        data = chunk.data
        return (
            data.endswith(b"\n")
            and len(data) <= self._config.max_chunk
            and not self._buffers[chunk.stream]
            and self._events.statistics().current_buffer_used == 0
        )

    def _coalesce(self, first: OutputChunk) -> StateChanged | Completed | None:
        """Buffer `first` and every output chunk already waiting, up to max_chunk in all.

        Returns the non-output event that stopped the coalescing, if any.
        """
        self._buffers[first.stream] += first.data
        while sum(len(b) for b in self._buffers.values()) < self._config.max_chunk:
            try:
                event = self._events.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                # EndOfChannel is seen again (and handled) by the next receive().
                return None
            if not isinstance(event, OutputChunk):
                return event
            self._buffers[event.stream] += event.data
        return None

    async def _frame(self) -> None:
        now = trio.current_time()
        for stream in STREAMS:
            buf = self._buffers[stream]
            frames = take_frames(buf, self._config.max_chunk, flush=False)
            for frame in frames:
                await self._send_output(stream, frame)
            if not buf:
                self._pending_since[stream] = None
            elif frames or self._pending_since[stream] is None:
                self._pending_since[stream] = now  # a new partial line starts waiting

    def _flush_deadline(self) -> float:
        waiting = [t for t in self._pending_since.values() if t is not None]
        return min(waiting) + self._config.flush_delay if waiting else math.inf

    async def _flush_due(self) -> None:
        now = trio.current_time()
        for stream in STREAMS:
            since = self._pending_since[stream]
            if since is None or now < since + self._config.flush_delay:
                continue
            if self._unread is not None and self._unread(stream) > 0:
                self._pending_since[stream] = now  # the rest is in the pipe: keep waiting
                continue
            buf = self._buffers[stream]
            await self._send_output(stream, take_partial(buf))
            self._pending_since[stream] = now if buf else None

    async def _flush(self, *, final: bool) -> None:
        for stream in STREAMS:
            for frame in take_frames(self._buffers[stream], self._config.max_chunk, flush=final):
                await self._send_output(stream, frame)
            self._pending_since[stream] = None

    async def _send_output(self, stream: Stream, data: bytes) -> None:
        await self._send(lambda seq: Output(seq=seq, stream=stream, data=data))

    async def _send(self, make: Callable[[int], SequencedEvent]) -> None:
        if self._discarding:
            return
        seq = self.last_seq + 1
        event = make(seq)
        if await self._to_sink(lambda: self._deliver(event)):
            self.last_seq = seq
            await self._drain_notes()

    async def _drain_notes(self) -> None:
        """Deliver the notes posted so far, in order (once: not from inside itself)."""
        if self._draining_notes:
            return
        self._draining_notes = True
        try:
            while self._notes and not self._discarding:
                await self._send(partial(_note, *self._notes.popleft()))
        finally:
            self._draining_notes = False

    async def _to_sink(self, call: Callable[[], Awaitable[None]]) -> bool:
        """Await a sink call; False (and discard mode from now on) if the sink is gone."""
        try:
            await call()
        except SinkClosed as exc:
            # The sink is gone (e.g. the client disconnected).  Keep draining so the runner is
            # never blocked by a dead sink.
            self._discarding = True
            self._wake_takers()
            self._notes.clear()
            self._buffers = {s: bytearray() for s in STREAMS}
            self._pending_since = {s: None for s in STREAMS}
            log.warning("pump.discarding", error=repr(exc.__cause__ or exc), last_seq=self.last_seq)
            return False
        return True
