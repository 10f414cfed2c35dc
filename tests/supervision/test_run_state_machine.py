"""A hypothesis state machine drives real runs through supervision and checks the run's table.

Rules: spawn (a ticker with a background child, a stdin echo, a run that exits by itself),
pause, resume, signal, cancel, stdin write and close, wait for a natural exit.  Invariants,
after every step: every state change a run made is an edge of states.TRANSITIONS; a control's
result matches /proc (paused: every member stopped; resumed: none stopped); a completed run has
no live process; every run's events have contiguous seqs, and its Completed is the last one,
delivered once.  Runs live in a trio loop on a thread (rules are synchronous).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from threaded_trio import ThreadedHost

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.errors import InvalidTransition, StdinClosed
from cc_executor.supervision.events import CompletedEvent, RunState
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.run import Run
from cc_executor.supervision.spawn import SpawnSpec
from cc_executor.supervision.states import EDGES
from cc_executor.supervision.testing import (
    Recorder,
    marked_processes,
    process_state,
    python_argv,
    start_run,
)

ENV = {"PATH": "/usr/bin:/bin"}
CONFIG = SupervisionConfig(term_grace=0.5, kill_wait=2.0, drain_timeout=1.0)
KINDS = {
    "ticker": python_argv(
        "import os, time\nif os.fork() == 0:\n    time.sleep(120)\n"
        "while True:\n    print('tick', flush=True)\n    time.sleep(0.05)\n"
    ),
    "echo": python_argv(
        "import sys\nfor line in sys.stdin:\n    sys.stdout.write(line)\n    sys.stdout.flush()\n"
    ),
    "short": python_argv("import time\nprint('hello', flush=True)\ntime.sleep(0.3)\n"),
}
STOPPED = ("T", "t")


class Host(ThreadedHost):
    nursery: trio.Nursery

    async def setup(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery


@attrs.define
class Tracked:
    run: Run
    recorder: Recorder
    kind: str


class RunMachine(RuleBasedStateMachine):
    runs = Bundle("runs")

    # Set by the test for the whole machine run (hypothesis builds the machine itself).
    host: Host
    prefix: str
    numbers: Iterator[int]
    moves: list[tuple[RunState, RunState]]

    def __init__(self) -> None:
        super().__init__()
        self.registry = RunRegistry()
        self.tracked: list[Tracked] = []

    def call(self, fn: Callable[..., Any], *args: Any, bound: float = 30) -> Any:
        async def bounded() -> Any:
            with trio.fail_after(bound):
                return await fn(*args)

        return self.host.run(bounded)

    @rule(target=runs, kind=st.sampled_from(sorted(KINDS)))
    def spawn(self, kind: str) -> Tracked:
        recorder = Recorder()
        spec = SpawnSpec(
            argv=KINDS[kind],
            env=ENV,
            run_id=f"{self.prefix}-{next(self.numbers):05d}",  # no id a prefix of another
            stdin="pipe" if kind == "echo" else "null",
        )
        run = self.call(start_run, self.host.nursery, spec, CONFIG, self.registry, recorder)
        tracked = Tracked(run, recorder, kind)
        self.tracked.append(tracked)
        return tracked

    @rule(t=runs)
    def pause(self, t: Tracked) -> None:
        before = t.run.state
        try:
            self.call(t.run.pause)
        except InvalidTransition:
            assert before is not RunState.RUNNING or t.run.state is not RunState.RUNNING
            return
        assert before is RunState.RUNNING
        members = self.host.run_sync(t.run.members)
        assert all(process_state(pid) in (*STOPPED, None, "Z") for pid in members)

    @rule(t=runs)
    def resume(self, t: Tracked) -> None:
        before = t.run.state
        try:
            self.call(t.run.resume)
        except InvalidTransition:
            assert before is not RunState.PAUSED
            return
        assert before is RunState.PAUSED
        members = self.host.run_sync(t.run.members)
        assert not any(process_state(pid) == "T" for pid in members)

    @rule(t=runs)
    def send_signal(self, t: Tracked) -> None:
        try:
            self.host.run_sync(t.run.send_signal, "WINCH")  # changes no state
        except InvalidTransition:
            assert t.run.state is RunState.COMPLETED or t.run.root_reaped

    @rule(t=runs)
    def cancel(self, t: Tracked) -> None:
        try:
            self.call(t.run.cancel, "by the machine")
        except InvalidTransition:
            assert t.run.state is RunState.COMPLETED
        self.call(t.run.wait)
        assert t.run.state is RunState.COMPLETED

    @rule(t=runs, line=st.binary(min_size=1, max_size=20).map(lambda b: b.hex().encode()))
    def write_stdin(self, t: Tracked, line: bytes) -> None:
        try:
            self.call(t.run.write_stdin, line + b"\n")
        except StdinClosed:
            assert not t.run.stdin_open or t.kind != "echo"

    @rule(t=runs)
    def close_stdin(self, t: Tracked) -> None:
        try:
            self.call(t.run.close_stdin)
        except StdinClosed:
            assert t.kind != "echo" or not t.run.stdin_open

    @rule(t=runs)
    def wait_natural_exit(self, t: Tracked) -> None:
        if t.kind == "short" and t.run.state is RunState.RUNNING:
            self.call(t.run.wait)

    @invariant()
    def states_move_along_the_table(self) -> None:
        assert all(move in EDGES for move in self.moves), self.moves

    @invariant()
    def events_are_contiguous_and_completion_is_last_and_once(self) -> None:
        for t in self.tracked:
            events = list(t.recorder.events)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            completions = [i for i, e in enumerate(events) if isinstance(e, CompletedEvent)]
            assert completions in ([], [len(events) - 1])

    @invariant()
    def nothing_lives_after_completion(self) -> None:
        for t in self.tracked:
            if t.run.state is RunState.COMPLETED:
                assert not marked_processes(t.run.run_id), t.run

    def teardown(self) -> None:
        for t in self.tracked:
            if t.run.state is not RunState.COMPLETED:
                with contextlib.suppress(InvalidTransition):
                    self.call(t.run.cancel, "teardown")
                self.call(t.run.wait)


def test_run_state_machine(run_id: Callable[[], str], monkeypatch: pytest.MonkeyPatch) -> None:
    moves: list[tuple[RunState, RunState]] = []
    real_move = Run._move

    def recording_move(self: Run, action: Any) -> None:
        before = self.state
        real_move(self, action)
        moves.append((before, self.state))

    monkeypatch.setattr(Run, "_move", recording_move)
    with Host() as host:
        RunMachine.host, RunMachine.moves = host, moves
        RunMachine.prefix, RunMachine.numbers = run_id(), itertools.count(1)
        run_state_machine_as_test(
            RunMachine,
            settings=settings(
                max_examples=25,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    assert moves, "no run ever changed state"
