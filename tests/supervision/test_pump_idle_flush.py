"""A partial line is delivered by time only when the pipe behind it is really empty."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Output,
    OutputChunk,
    RunEvent,
    Stream,
)
from cc_executor.supervision.outcome import Exited
from cc_executor.supervision.pump import OutputPump
from cc_executor.supervision.testing import Recorder

DONE = Completed(outcome=Exited(0), stdout_bytes=0, stderr_bytes=0, duration=0.0)


def outputs(events: Sequence[object]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Output)]


async def test_partial_line_waits_while_the_pipe_still_holds_bytes(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = SupervisionConfig(flush_delay=0.5)
    unread: dict[Stream, int] = {"stdout": 7, "stderr": 0}
    send, receive = trio.open_memory_channel[RunEvent](config.channel_capacity)
    recorder = Recorder()
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            pump = OutputPump(receive, recorder.deliver, config, unread.__getitem__)
            nursery.start_soon(pump.run)
            async with send:
                await send.send(OutputChunk("stdout", b"whole\npart"))
                # Many flush delays pass, but the pipe still holds the rest of the line (the
                # runner was merely slow to read it): the partial line is held.
                await trio.sleep(10)
                assert outputs(recorder.events) == [b"whole\n"]
                # The child really stopped mid-line: the pipe is empty, so it goes out.
                unread["stdout"] = 0
                await trio.sleep(1)
                assert outputs(recorder.events) == [b"whole\n", b"part"]
                await send.send(OutputChunk("stdout", b"ial\n"))
                await send.send(DONE)
    assert outputs(recorder.events) == [b"whole\n", b"part", b"ial\n"]
    assert isinstance(recorder.events[-1], CompletedEvent)
    assert all(isinstance(e, Output | CompletedEvent) for e in recorder.events)
