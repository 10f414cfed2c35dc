"""The handle of one running process tree, and its control calls.

Theory of operation: state moves RUNNING <-> PAUSED, then ENDING (the ladder or the sweep of
leftovers is running, output is draining) and finally COMPLETED, only along the table in
states.py.  Control calls on a run are serialised by one lock, and a call returns only once the
kernel shows its effect on every member; the matching StateChanged event is queued before the
lock is released, so events are in the same order as the calls.  Queuing it never waits: when
the channel is full (the pump waits for a client that does not read, or for a journal that
cannot write) the event is held in order (at most MAX_HELD_STATES of them; a control beyond that
is refused) and a task of the runner puts it in the channel as soon as there is room, the
readers' next chunks waiting behind it, so no control waits for the output of a run — before, a
PAUSE's event waiting for room held the lock, and the next RESUME or CANCEL from any connection
waited with it.  A PAUSE's event also waits behind the output the child wrote before it
stopped that is still in a pipe (FIONREAD at the confirmed stop): the readers deliver up to
that mark, reading no further while it stands, and only then is `process.paused` queued, so
output written before the pause always precedes it.  The ladder itself is run by the runner
task, never by the caller of cancel(): cancel() records the request, wakes the runner and waits
for the ladder's result, so a caller that goes away cannot leave a ladder half done.  stdin has
its own writer (stdin.py) and never takes the control lock, so a child that does not read its
stdin cannot hold up a control.  Idle time is time the child wrote nothing: when the idle
deadline passes with output waiting in a pipe (the daemon itself was stopped or busy), the
clock restarts instead.  The runner's code
(runner.py) uses the underscore methods below; nothing else should.
"""

from __future__ import annotations

import fcntl
import math
import os
import signal
import sys
import termios
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import attrs
import structlog
import trio

from cc_executor.supervision import ladder, procfs
from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.errors import ControlTimeout, InvalidTransition, StdinClosed
from cc_executor.supervision.events import RunEvent, RunState, StateChanged, Stream
from cc_executor.supervision.outcome import Outcome, Rung
from cc_executor.supervision.procfs import ProcStat
from cc_executor.supervision.reaper import is_subreaper
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.signalling import Until, drive, resolve_signal, signal_members
from cc_executor.supervision.spawn import Spawned, SpawnSpec
from cc_executor.supervision.states import Action, next_state
from cc_executor.supervision.stdin import StdinPipe
from cc_executor.supervision.tree import scan_run

if TYPE_CHECKING:
    from cc_executor.supervision.pump import OutputPump

__all__ = ["MAX_HELD_STATES", "Run", "RunState"]

log = structlog.get_logger()

# State changes that may wait for room in a run's channel at once; a PAUSE or RESUME beyond
# them is refused (InvalidTransition) rather than held without bound.
MAX_HELD_STATES = 8


@attrs.define
class _Fence:
    """A held state change that must follow output still in the pipes (the module doc)."""

    position: int  # the held state change it stands before, counted from the run's start
    marks: dict[Stream, int]  # per stream: the bytes read once that output is delivered


class Run:
    """A live run: read its attributes, control it with pause/resume/cancel/signals/stdin."""

    def __init__(
        self,
        spec: SpawnSpec,
        spawned: Spawned,
        config: SupervisionConfig,
        registry: RunRegistry,
        events: trio.MemorySendChannel[RunEvent],
        *,
        timeout: float | None,
        idle_timeout: float | None,
    ) -> None:
        self.run_id = spec.run_id
        self.pid = spawned.process.pid
        self.pgid = self.pid  # new session: pgid = sid = pid
        self.argv = spec.argv
        self.started_at = trio.current_time()
        self.outcome: Outcome | None = None
        self.stdout_bytes = 0
        self.stderr_bytes = 0
        # How often the runner found the output channel full and had to wait (back-pressure).
        self.stalls = 0
        self.root_reaped = False
        # The pump of the run's events, if its readers may hand it chunks directly (pump.py).
        self.pump: OutputPump | None = None
        self._state = RunState.RUNNING
        self._config = config
        self._registry = registry
        self._events = events
        self._stdin = (
            None if spawned.stdin is None else StdinPipe(spawned.stdin, config.stdin_max_pending)
        )
        self._pipes: dict[Stream, trio.lowlevel.FdStream] = {
            "stdout": spawned.stdout,
            "stderr": spawned.stderr,
        }
        self._control = trio.Lock()
        # State changes waiting for room in the channel, oldest first (see the module doc),
        # and the runner's nursery that puts them there.
        self._held_states: deque[StateChanged] = deque()
        self._background: trio.Nursery | None = None
        # Held state changes counted since the start (those put in the channel are the rest:
        # `_held_sent`), the fences among them, each stream's bytes delivered and the readers
        # that have ended, and an event for any change of those (the waits below loop on it).
        self._held_added = 0
        self._fences: deque[_Fence] = deque()
        self._delivered: dict[Stream, int] = {"stdout": 0, "stderr": 0}
        self._streams_ended: set[Stream] = set()
        self._held_moved = trio.Event()
        self._absolute_deadline = math.inf if timeout is None else self.started_at + timeout
        self._idle_timeout = idle_timeout
        self._last_output = self.started_at
        self._cancel_reason: str | None = None
        self._max_output = spec.max_output_bytes
        # The runner waits for the root's exit inside this scope; cancel() and the timeouts
        # end that wait.
        self._wake = trio.CancelScope(deadline=self._end_deadline())
        self._rung: Rung | None = None
        self._ended = trio.Event()
        self._done = trio.Event()
        # Whether a scan ever saw a dead process of the run other than its root: only then can
        # the run leave zombies among the daemon's children for the runner to reap (tree.py).
        self.orphan_zombies = False
        # Every live member the last scan found, with its start time (tree.py, `known`).
        self._known: Mapping[int, int] = {}
        self._start_ticks: int | None = None

    def __repr__(self) -> str:
        return f"<Run {self.run_id} pid={self.pid} {self._state.value}>"

    @property
    def config(self) -> SupervisionConfig:
        """The settings this run works with (a plan may change the daemon's for one run)."""
        return self._config

    @property
    def state(self) -> RunState:
        return self._state

    @property
    def rung(self) -> Rung | None:
        """The rung of the cancel ladder that ended the run (None while it is not over)."""
        return self._rung

    @property
    def stdin_open(self) -> bool:
        return self._stdin is not None and self._stdin.open

    @property
    def stdin_pending(self) -> int:
        """Bytes written to stdin by callers that the child has not taken yet."""
        return 0 if self._stdin is None else self._stdin.pending

    def members(self, *, full: bool = False) -> set[int]:
        """Every live process of the run (empty once the root has been reaped).

        ``full`` asks for an exhaustive answer.  As child subreaper the quick scan already is
        one: an orphan of the run can only be reparented to the daemon (to its first thread, whose
        children are scanned) or to a subreaper inside the run's own tree (which the walk
        covers).  Only
        without the subreaper can orphans reach init, and only then is all of /proc scanned —
        doing it anyway costs a stat and an environ read per process on the machine, for every
        run that ends, which made a burst of runs quadratic.
        """
        if self.root_reaped:
            return set()
        subreaper = is_subreaper()
        # The daemon's first thread has no children but the orphans it adopted when it is a
        # subreaper whose event loop (which spawns every root) runs on another thread
        # (executor/daemon/loop.py): only then is an unmarked one of them surely some run's.
        # Not as PID 1 (the container): it adopts every orphan of its namespace, a `podman
        # exec`'s as well as its runs'.
        pid = os.getpid()
        orphans_only = subreaper and threading.get_native_id() != pid and pid != 1
        membership = scan_run(
            self.pid,
            self.pgid,
            self.run_id,
            roots=self._registry.unreaped_roots(),
            full=not subreaper,
            known=self._known,
            claim_unmarked=self._claims_unmarked if orphans_only else None,
        )
        self._known = membership.started
        if not self.orphan_zombies and membership.zombies - {self.pid}:
            self.orphan_zombies = True
        return set(membership.live)

    def start_ticks(self) -> int | None:
        """When the root started (clock ticks after boot), or None once it cannot be read."""
        if self._start_ticks is None and not self.root_reaped:
            stat = procfs.read_stat(self.pid)  # an unreaped child: the pid is still the root's
            self._start_ticks = None if stat is None else stat.start_ticks
        return self._start_ticks

    def _claims_unmarked(self, orphan: ProcStat) -> bool:
        """Whether an orphan that shows no mark of any run (no marker; another group and
        session: ``setsid env -i``), that no scan of its run saw before its parent died, is
        this run's: it started after this run's root, and no other live run's root started
        before it, so no other run can have started it.  Otherwise it is left to the end of
        the last run that can have: that run's scan finds it this way then.
        """
        own = self.start_ticks()
        if own is None or orphan.start_ticks < own:
            return False
        if self._registry.spawn_in_flight:  # a root not registered yet: look again later
            self._registry.unowned_seen(orphan.pid, orphan.start_ticks)
            return False
        for other in self._registry.runs():
            if other is self or other.root_reaped:
                continue
            ticks = other.start_ticks()
            if ticks is None or ticks <= orphan.start_ticks:
                # Swept once the last of them has ended (registry.py).
                self._registry.unowned_seen(orphan.pid, orphan.start_ticks)
                return False
        return True

    def unread_bytes(self, stream: Stream) -> int:
        """Bytes the child wrote to `stream` that the runner has not read yet (FIONREAD)."""
        try:
            raw = fcntl.ioctl(self._pipes[stream].fileno(), termios.FIONREAD, b"\0" * 4)
        except (OSError, ValueError):
            return 0  # closed: nothing more will come
        return int.from_bytes(raw, sys.byteorder, signed=True)

    async def wait(self) -> Outcome:
        """Wait for the run to complete and return its outcome."""
        await self._done.wait()
        assert self.outcome is not None
        return self.outcome

    async def wait_ending(self) -> None:
        """Wait until every process of the run is gone (its output may still be draining)."""
        await self._ended.wait()

    async def pause(self, held: Callable[[], None] | None = None) -> None:
        """Stop every process of the run; return once all of them are stopped.

        `held` is called the moment the effect holds (every process stopped, the state
        PAUSED), before the event is queued — which may wait for the pump to make room — so a
        caller can acknowledge the pause without waiting behind the run's output.

        Raises:
            InvalidTransition: the run is not RUNNING.
            ControlTimeout: some processes did not stop within control_timeout (the ones that
                did are continued again, and the run stays RUNNING).
        """
        async with self._control:
            next_state(self._state, Action.PAUSE)
            self._require_room("pause")
            left = await self._drive(signal.SIGSTOP, Until.STOPPED)
            if left:
                signal_members(self, signal.SIGCONT)
                raise ControlTimeout("pause", sorted(left))
            self._move(Action.PAUSE)
            self._wake.deadline = self._end_deadline()
            if held is not None:
                held()
            self._queue_state(RunState.PAUSED, behind_unread=True)

    async def resume(self, held: Callable[[], None] | None = None) -> None:
        """Continue every process of the run; return once none of them is stopped.

        `held` as for `pause`: called once no process is stopped, before the event is queued.

        Raises:
            InvalidTransition: the run is not PAUSED.
            ControlTimeout: some processes were still stopped after control_timeout (one that
                stops itself as soon as it runs); the others are stopped again, and the run
                stays PAUSED, as its state says.
        """
        async with self._control:
            next_state(self._state, Action.RESUME)
            self._require_room("resume")
            left = await self._drive(signal.SIGCONT, Until.CONTINUED)
            if left:
                await self._drive(signal.SIGSTOP, Until.STOPPED)
                raise ControlTimeout("resume", sorted(left))
            self._move(Action.RESUME)
            self._last_output = trio.current_time()  # the idle clock restarts on resume
            self._wake.deadline = self._end_deadline()
            if held is not None:
                held()
            self._queue_state(RunState.RUNNING)

    @property
    def stdin_bound(self) -> int:
        """The most bytes of stdin writes that may wait for the child at once."""
        return self._config.stdin_max_pending

    def skip_interrupt(self) -> None:
        """From now on the ladder starts at SIGTERM: an interrupt has nothing left to save
        (a Claude CLI that has written its result)."""
        if self._config.interrupt_grace is not None:
            self._config = attrs.evolve(self._config, interrupt_grace=None)

    async def cancel(self, reason: str) -> Rung:
        """End the run through the ladder; return the rung that ended it, once all is gone.

        A second cancel (or a cancel while the run is already ending) joins the ladder in
        progress and returns its rung.

        Raises:
            InvalidTransition: the run has completed.
        """
        async with self._control:
            if self._state is not RunState.ENDING:
                self._move(Action.END)
                self._cancel_reason = reason
                self._close_stdin("the run is being cancelled")
                self._wake.cancel()
            else:
                self._move(Action.END)
        await self._ended.wait()
        assert self._rung is not None
        return self._rung

    def send_signal(self, sig: str | int) -> None:
        """Send a signal ("INT", "SIGINT" or 2) to the run's group and to members outside it.

        Raises:
            ValueError: unknown signal.
            InvalidTransition: the run has completed.
        """
        resolved = resolve_signal(sig)
        if self._state is RunState.COMPLETED or self.root_reaped:
            raise InvalidTransition("cannot signal a completed run")
        signal_members(self, resolved)

    async def write_stdin(self, data: bytes) -> None:
        """Write to the child's stdin; return once every byte is in the pipe.

        Never waits on the run's controls, and a control never waits on it (stdin.py).

        Raises:
            StdinFull: the write would exceed SupervisionConfig.stdin_max_pending (at once).
            StdinClosed: stdin is not a pipe, is closed, or was closed (EOF, cancel, the run
                ended) before these bytes got in.  A kind of InvalidTransition.
        """
        await self._require_stdin().write(data)

    def queue_stdin(self, data: bytes) -> None:
        """Queue `data` for the child's stdin without waiting for it to reach the pipe, and
        without a checkpoint (see StdinPipe.queue).

        Raises:
            StdinFull: as write_stdin.
            StdinClosed: stdin is not a pipe or is closed.
        """
        self._require_stdin().queue(data)

    async def stdin_drained(self) -> None:
        """Return once every byte queued or written so far is in the pipe (or failed)."""
        if self._stdin is not None:
            await self._stdin.drained()
        else:
            await trio.lowlevel.checkpoint()

    async def close_stdin(self) -> None:
        """Close the child's stdin (it reads EOF); pending writes fail with StdinClosed.

        Raises:
            StdinClosed: stdin is not a pipe or is already closed.
        """
        self._require_stdin()
        self._close_stdin("stdin was closed")
        await trio.lowlevel.checkpoint()

    # --- helpers -------------------------------------------------------------------------

    def _move(self, action: Action) -> None:
        self._state = next_state(self._state, action)

    def _require_stdin(self) -> StdinPipe:
        if self._stdin is None:
            raise StdinClosed("stdin is not a pipe for this run")
        if not self._stdin.open:
            raise StdinClosed("stdin is closed")
        return self._stdin

    def _close_stdin(self, why: str) -> None:
        if self._stdin is not None:
            self._stdin.close(why)

    def _require_room(self, action: str) -> None:
        if len(self._held_states) >= MAX_HELD_STATES:
            raise InvalidTransition(
                f"cannot {action}: {len(self._held_states)} state changes of this run wait to "
                "be delivered behind output that is not being read (a client that does not "
                "read, or a journal that cannot write)"
            )

    def _queue_state(self, state: RunState, *, behind_unread: bool = False) -> None:
        """Queue the event of a state change in order, without waiting (module doc);
        `behind_unread`: after the output still in the pipes (every process is stopped)."""
        event = StateChanged(state)
        marks = self._unread_marks() if behind_unread and self._background is not None else {}
        if not self._held_states:
            if not marks:
                try:
                    self._events.send_nowait(event)
                    return
                except trio.WouldBlock:
                    pass
            if self._background is None:
                raise AssertionError("a run's state changed before its runner started")
            self._background.start_soon(self._put_held_states)
        if marks:
            self._fences.append(_Fence(self._held_added, marks))
        self._held_states.append(event)
        self._held_added += 1

    def _unread_marks(self) -> dict[Stream, int]:
        """Per stream with output not delivered yet — in its pipe, or read and held by its
        reader (waiting for held state changes, or for room) — the bytes delivered once it is."""
        marks: dict[Stream, int] = {}
        for stream in self._pipes:
            mark = self._read_bytes(stream) + self.unread_bytes(stream)
            if mark > self._delivered[stream] and stream not in self._streams_ended:
                marks[stream] = mark
        return marks

    def _read_bytes(self, stream: Stream) -> int:
        return self.stdout_bytes if stream == "stdout" else self.stderr_bytes

    def _fence_passed(self, fence: _Fence) -> bool:
        return all(
            self._delivered[stream] >= mark or stream in self._streams_ended
            for stream, mark in fence.marks.items()
        )

    def _moved(self) -> None:
        self._held_moved.set()
        self._held_moved = trio.Event()

    async def _put_held_states(self) -> None:
        """The held state changes into the channel, oldest first, as room appears; one
        behind a fence once the readers have delivered the output it waits for."""
        while self._held_states:
            if self._fences and self._fences[0].position == self._held_sent:
                while not self._fence_passed(self._fences[0]):
                    await self._held_moved.wait()
                self._fences.popleft()
            await self._events.send(self._held_states[0])
            self._held_states.popleft()
            self._moved()

    @property
    def _held_sent(self) -> int:
        """Held state changes put in the channel since the start."""
        return self._held_added - len(self._held_states)

    def _read_limit(self, stream: Stream, size: int) -> int:
        """How much a reader may read at once: no further than a fence's mark."""
        done = self._delivered[stream]
        for fence in self._fences:
            mark = fence.marks.get(stream)
            if mark is not None and mark > done:
                return min(size, mark - done)
        return size

    async def _before_chunk(self, stream: Stream) -> None:
        """Return once the held state changes that precede the stream's next chunk are in
        the channel: all of them, or those before the first fence it is output for."""
        done = self._delivered[stream]
        target = self._held_added
        for fence in self._fences:
            if fence.marks.get(stream, -1) > done:
                target = fence.position
                break
        while self._held_sent < target:
            await self._held_moved.wait()

    def _chunk_delivered(self, stream: Stream, size: int) -> None:
        self._delivered[stream] += size
        if self._fences:
            self._moved()

    def _stream_ended(self, stream: Stream) -> None:
        """The stream's reader has ended: no fence waits for it any more."""
        self._streams_ended.add(stream)
        self._moved()

    async def _drive(self, sig: int, until: Until) -> set[int]:
        deadline = trio.current_time() + self._config.control_timeout
        return await drive(self, sig, until, deadline=deadline, config=self._config)

    def _restart_idle_clock(self) -> None:
        """The idle deadline passed with output in a pipe: the child was writing (the daemon
        was the one not reading), so it was not idle; a fresh wake scope waits on."""
        self._last_output = trio.current_time()
        self._wake = trio.CancelScope(deadline=self._end_deadline())

    def _was_writing(self) -> bool:
        """Whether the child wrote within the idle timeout after all: output waits in a pipe,
        or a reader took some since the deadline fired (both run after a stall)."""
        if any(self.unread_bytes(stream) > 0 for stream in self._pipes):
            return True
        idle = self._idle_timeout
        return idle is not None and trio.current_time() < self._last_output + idle

    def _end_deadline(self) -> float:
        if self._idle_timeout is None or self._state is RunState.PAUSED:
            return self._absolute_deadline
        return min(self._absolute_deadline, self._last_output + self._idle_timeout)

    # --- for the runner ------------------------------------------------------------------

    async def _serve_stdin(self) -> None:
        """The stdin writer task (until stdin is closed); nothing to do without a pipe."""
        if self._stdin is not None:
            await self._stdin.serve()

    def _note_output(self, stream: Stream, size: int) -> None:
        if stream == "stdout":
            self.stdout_bytes += size
        else:
            self.stderr_bytes += size
        if self._idle_timeout is not None:
            self._last_output = trio.current_time()
            self._wake.deadline = self._end_deadline()
        if (
            self._max_output is not None
            and self.stdout_bytes + self.stderr_bytes > self._max_output
            and self._cancel_reason is None
            and self._state in (RunState.RUNNING, RunState.PAUSED)
        ):
            # As a cancel: the runner wakes, ends the run through the ladder and reports
            # Cancelled with this reason.  The chunk just read is still delivered.
            self._cancel_reason = f"output limit of {self._max_output} bytes exceeded"
            self._wake.cancel()

    async def _begin_ending(self) -> None:
        """Move to ENDING (if cancel() has not already)."""
        async with self._control:
            if self._state is not RunState.ENDING:
                self._move(Action.END)
            self._close_stdin("the run is ending")

    async def _terminate(self) -> tuple[Rung, bool]:
        await self._begin_ending()
        return await ladder.terminate(self, self._config)

    def _set_ended(self, rung: Rung) -> None:
        self._rung = rung
        self._ended.set()

    async def _complete(self, outcome: Outcome) -> None:
        async with self._control:
            self._finish(outcome)

    def _finish(self, outcome: Outcome) -> None:
        """Record the outcome and wake every waiter (also used when the runner is aborted)."""
        self.outcome = outcome
        self._move(Action.COMPLETE)
        if self._rung is None:
            self._set_ended(Rung.SIGKILL)
        self._close_stdin("the run has completed")
        self._events.close()
        self._done.set()
