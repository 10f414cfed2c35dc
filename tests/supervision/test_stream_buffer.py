"""The stream buffer (read_size, `ccx serve --stream-buffer`) bounds what a run holds for a sink
that takes nothing: the child blocks in write() and the daemon stops reading.  Through the
channel (a pump its readers do not hand chunks to) that is a few reads; when the readers hand
their reads to the pump themselves, it is the one read being delivered."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

import pytest
import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.events import Note, Output, RunEvent, SequencedEvent
from cc_executor.supervision.pump import OutputPump
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.runner import run_process
from cc_executor.supervision.spawn import SpawnSpec

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@pytest.mark.parametrize("read_size", [4096, 32 * 1024, 128 * 1024])
async def test_a_stalled_sink_through_the_channel_holds_at_most_a_few_reads(
    read_size: int, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    config = SupervisionConfig(read_size=read_size, term_grace=1.0, kill_wait=2.0)
    delivered: list[SequencedEvent] = []
    blocked = trio.Event()

    async def never_done(event: SequencedEvent) -> None:
        delivered.append(event)
        blocked.set()
        await trio.sleep_forever()  # a client that never reads: the send never completes

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            send, receive = trio.open_memory_channel[RunEvent](config.channel_capacity)
            run = await nursery.start(
                partial(run_process, SpawnSpec(("yes",), ENV, run_id()), config, send, registry)
            )
            nursery.start_soon(OutputPump(receive, never_done, config).run)
            await blocked.wait()
            # Once the reader finds the channel full it waits holding its last read: from then
            # on nothing more is read, however long the child keeps trying to write.
            for _ in range(6000):  # bounded by fail_after
                if run.stalls:
                    break
                await trio.sleep(0.01)
            held = run.stdout_bytes
            for _ in range(5):
                await trio.sleep(0.02)
                assert run.stdout_bytes == held
            nursery.cancel_scope.cancel()
    capacity = config.channel_capacity
    # The frame the sink holds (the first read and what was waiting), the channel, the reader.
    assert held <= (2 * capacity + 2) * read_size
    assert len(delivered) == 1


@pytest.mark.parametrize("read_size", [4096, 128 * 1024, 256 * 1024])
@pytest.mark.parametrize("first", ["output", "note"])
async def test_a_stalled_sink_of_a_direct_pump_holds_at_most_one_read(
    read_size: int, first: str, registry: RunRegistry, run_id: Callable[[], str]
) -> None:
    """The run's readers hand chunks to its pump (`run.pump`, as the daemon's runs do): once
    the sink stops taking, no read is made ahead of the one it holds — whether the sink got
    stuck in a reader's delivery (the first output) or in the pump's own (a note posted before
    any output, which the pump delivers itself)."""
    config = SupervisionConfig(read_size=read_size, term_grace=1.0, kill_wait=2.0)
    delivered: list[SequencedEvent] = []
    blocked = trio.Event()

    async def never_done(event: SequencedEvent) -> None:
        delivered.append(event)
        blocked.set()
        await trio.sleep_forever()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            send, receive = trio.open_memory_channel[RunEvent](config.channel_capacity)
            run = await nursery.start(
                partial(run_process, SpawnSpec(("yes",), ENV, run_id()), config, send, registry)
            )
            run.pump = pump = OutputPump(receive, never_done, config)
            if first == "note":
                pump.post("first", b"{}")
            nursery.start_soon(pump.run)
            await blocked.wait()
            # The child goes on writing into the pipe (1 MiB) and blocks; the daemon reads
            # nothing more (a reader already past its wait for the pump makes its one read).
            await trio.sleep(0.1)
            held = run.stdout_bytes
            for _ in range(10):
                await trio.sleep(0.02)
                assert run.stdout_bytes == held
            nursery.cancel_scope.cancel()
    # A read may have gone to the channel before the test set run.pump: at most that one.
    assert held <= read_size
    assert len(delivered) == 1
    assert isinstance(delivered[0], Note if first == "note" else Output)
