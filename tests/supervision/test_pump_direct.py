"""A reader hands its read straight to a parked pump: same events, same order, same owner.

Real runs (runner, pipes, children); the sinks record which task delivered each event, since
that is the one thing the direct path changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

import pytest
import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.events import (
    CompletedEvent,
    Output,
    RunEvent,
    RunState,
    SequencedEvent,
    StateEvent,
)
from cc_executor.supervision.outcome import Cancelled, Exited
from cc_executor.supervision.pump import OutputPump
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.runner import run_process
from cc_executor.supervision.spawn import SpawnSpec
from cc_executor.supervision.testing import Recorder, start_run

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
# Lines now and then: each read is short, and the pump is idle when it comes.
NOW_AND_THEN = "for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done"


def on_a_reader() -> bool:
    return "_PipeReader" in trio.lowlevel.current_task().name


class TaskRecorder(Recorder):
    """A Recorder that also notes, per event, whether a pipe's reader delivered it."""

    def __init__(self) -> None:
        super().__init__()
        self.by_reader: list[bool] = []

    async def deliver(self, event: SequencedEvent) -> None:
        self.by_reader.append(on_a_reader())
        await super().deliver(event)


async def test_lines_now_and_then_reach_the_sink_from_their_reader(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    recorder = TaskRecorder()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            spec = SpawnSpec(("sh", "-c", NOW_AND_THEN), ENV, run_id())
            await start_run(nursery, spec, config, registry, recorder)
    assert recorder.output() == b"".join(b"line %d\n" % i for i in range(1, 6))
    assert [e.seq for e in recorder.events] == list(range(1, len(recorder.events) + 1))
    assert isinstance(recorder.events[-1], CompletedEvent)
    assert any(recorder.by_reader), "no line took the direct path"
    assert not recorder.by_reader[-1]  # the completion comes through the channel


class HeldSink(TaskRecorder):
    """Holds the first output a reader delivers until released."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = trio.Event()
        self.release = trio.Event()

    async def deliver(self, event: SequencedEvent) -> None:
        if isinstance(event, Output) and on_a_reader() and not self.holding.is_set():
            self.holding.set()
            await self.release.wait()
        await super().deliver(event)


async def test_a_pause_during_a_readers_delivery_follows_that_output(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    sink = HeldSink()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            spec = SpawnSpec(("sh", "-c", "sleep 0.2; echo held; exec sleep 30"), ENV, run_id())
            run = await start_run(nursery, spec, config, registry, sink)
            await sink.holding.wait()
            await run.pause()  # its event reaches the pump while the reader still delivers
            await trio.sleep(0.05)
            assert sink.events == []  # the pump waits for the reader's delivery
            sink.release.set()
            await run.resume()
            await run.cancel("done")
    kinds = [
        (type(e).__name__, e.state if isinstance(e, StateEvent) else None) for e in sink.events
    ]
    assert kinds == [
        ("Output", None),
        ("StateEvent", RunState.PAUSED),
        ("StateEvent", RunState.RUNNING),
        ("CompletedEvent", None),
    ]
    assert [e.seq for e in sink.events] == [1, 2, 3, 4]
    assert sink.output() == b"held\n"
    assert sink.by_reader[0]
    assert isinstance(run.outcome, Cancelled)


async def test_a_sink_bug_in_a_readers_delivery_fails_the_pump_not_the_runner(
    config: SupervisionConfig, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    """Stands for a bug in a sink (patched: no real fault makes a correct sink raise)."""
    delivered: list[SequencedEvent] = []

    async def deliver(event: SequencedEvent) -> None:
        if on_a_reader():
            raise RuntimeError("a bug")
        delivered.append(event)

    send, receive = trio.open_memory_channel[RunEvent](config.channel_capacity)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            spec = SpawnSpec(("sh", "-c", NOW_AND_THEN), ENV, run_id())
            run = await nursery.start(partial(run_process, spec, config, send, registry))
            pump = run.pump = OutputPump(receive.clone(), deliver, config)
            with pytest.raises(RuntimeError, match="a bug"):
                await pump.run()
            assert pump.discarding
            async for _ in receive:  # the pump's owner keeps the runner unblocked
                pass
    assert run.outcome == Exited(0)
    assert all(isinstance(e, Output) for e in delivered)
