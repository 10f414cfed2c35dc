"""Output pump framing and numbering, with memory channels and a virtual clock."""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from cc_executor.protocol.errors import LocalProtocolError
from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.errors import SinkClosed
from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Note,
    Output,
    OutputChunk,
    RunEvent,
    RunState,
    SequencedEvent,
    StateChanged,
    StateEvent,
)
from cc_executor.supervision.outcome import Exited
from cc_executor.supervision.pump import OutputPump
from cc_executor.supervision.testing import Recorder

DONE = Completed(outcome=Exited(0), stdout_bytes=0, stderr_bytes=0, duration=0.0)


def outputs(events: list[SequencedEvent]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Output)]


async def pump_all(events: list[RunEvent], config: SupervisionConfig) -> list[SequencedEvent]:
    """Queue every event first, then pump: the pump sees them all already waiting."""
    send, receive = trio.open_memory_channel[RunEvent](len(events) + 1)
    recorder = Recorder()
    async with send:
        for event in events:
            send.send_nowait(event)
    await OutputPump(receive, recorder.deliver, config).run()
    return recorder.events


async def test_waiting_lines_are_batched_and_kept_whole(autojump_clock: trio.abc.Clock) -> None:
    config = SupervisionConfig()
    events: list[RunEvent] = [
        OutputChunk("stdout", b"a\nb"),
        OutputChunk("stdout", b"c\nd"),
        StateChanged(RunState.PAUSED),
    ]
    with trio.fail_after(10):
        delivered = await pump_all([*events, OutputChunk("stdout", b"e\n"), DONE], config)
    assert [type(e) for e in delivered] == [Output, Output, StateEvent, Output, CompletedEvent]
    # Whole lines batched; the partial "d" is flushed before the state change.
    assert outputs(delivered) == [b"a\nbc\n", b"d", b"e\n"]
    assert [e.seq for e in delivered] == [1, 2, 3, 4, 5]


async def test_partial_line_waits_at_most_flush_delay(autojump_clock: trio.abc.Clock) -> None:
    config = SupervisionConfig(flush_delay=0.5)
    send, receive = trio.open_memory_channel[RunEvent](config.channel_capacity)
    recorder = Recorder()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(OutputPump(receive, recorder.deliver, config).run)
            async with send:
                await send.send(OutputChunk("stdout", b"ab"))
                await trio.sleep(0.1)  # shorter than flush_delay: held, then completed
                await send.send(OutputChunk("stdout", b"c\npar"))
                await trio.sleep(2)  # longer: the partial goes out alone
                assert outputs(recorder.events) == [b"abc\n", b"par"]
                await send.send(OutputChunk("stdout", b"tial\n"))
                await send.send(DONE)
    assert outputs(recorder.events) == [b"abc\n", b"par", b"tial\n"]
    assert isinstance(recorder.events[-1], CompletedEvent)


async def test_partial_line_is_flushed_even_while_the_other_stream_is_busy(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = SupervisionConfig(flush_delay=0.5)
    send, receive = trio.open_memory_channel[RunEvent](config.channel_capacity)
    recorder = Recorder()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(OutputPump(receive, recorder.deliver, config).run)
            async with send:
                await send.send(OutputChunk("stdout", b"prompt> "))
                for _ in range(20):
                    await send.send(OutputChunk("stderr", b"noise\n"))
                    await trio.sleep(0.1)
                assert b"prompt> " in outputs(recorder.events)
                await send.send(DONE)


async def test_long_line_is_split_at_max_chunk_not_inside_utf8(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = SupervisionConfig(max_chunk=10)
    text = "é" * 12 + "\n"  # 2-byte characters: 10 bytes is a boundary, 9 is not
    data = ("a" + text).encode()
    with trio.fail_after(10):
        delivered = await pump_all([OutputChunk("stdout", data), DONE], config)
    pieces = outputs(delivered)
    assert b"".join(pieces) == data
    assert all(len(p) <= 10 for p in pieces)
    for piece in pieces:
        piece.decode("utf-8")  # every piece is valid on its own


async def test_invalid_utf8_is_split_exactly_at_max_chunk(autojump_clock: trio.abc.Clock) -> None:
    config = SupervisionConfig(max_chunk=4)
    data = b"\x80" * 10
    with trio.fail_after(10):
        delivered = await pump_all([OutputChunk("stdout", data), DONE], config)
    assert outputs(delivered) == [b"\x80" * 4, b"\x80" * 4, b"\x80" * 2]


async def test_sink_failure_switches_to_discard_and_keeps_draining(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = SupervisionConfig()
    send, receive = trio.open_memory_channel[RunEvent](1)
    seen: list[SequencedEvent] = []

    async def deliver(event: SequencedEvent) -> None:
        if len(seen) == 2:
            raise SinkClosed("client went away")
        seen.append(event)

    pump = OutputPump(receive, deliver, config)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump.run)
            async with send:
                for i in range(100):  # would block forever with capacity 1 if nobody drained
                    await send.send(OutputChunk("stdout", b"line %d\n" % i))
                    await trio.sleep(0.01)
                await send.send(DONE)
    assert pump.discarding
    assert pump.last_seq == 2
    assert [e.seq for e in seen] == [1, 2]


async def test_any_other_sink_error_propagates_to_the_owner(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A sink bug (e.g. a LocalProtocolError, "should crash loudly") is not "client gone"."""
    config = SupervisionConfig()
    send, receive = trio.open_memory_channel[RunEvent](1)

    async def deliver(event: SequencedEvent) -> None:
        raise LocalProtocolError("seq 2, expected 1")

    pump = OutputPump(receive, deliver, config)

    async def feed() -> None:
        # The failed pump closes its end: a send after that is refused, as it should be.
        with contextlib.suppress(trio.BrokenResourceError):
            async with send:
                await send.send(OutputChunk("stdout", b"line\n"))
                await send.send(DONE)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            with pytest.raises(LocalProtocolError):
                await pump.run()
    assert not pump.discarding


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]), st.binary(max_size=40))),
    max_chunk=st.integers(min_value=1, max_value=32),
)
def test_any_chunking_reassembles_exactly(data: list[tuple[str, bytes]], max_chunk: int) -> None:
    config = SupervisionConfig(max_chunk=max_chunk)
    events: list[RunEvent] = [
        OutputChunk("stdout" if stream == "stdout" else "stderr", chunk) for stream, chunk in data
    ]
    delivered = trio.run(
        pump_all, [*events, DONE], config, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    assert [e.seq for e in delivered] == list(range(1, len(delivered) + 1))
    assert isinstance(delivered[-1], CompletedEvent)
    for stream in ("stdout", "stderr"):
        expected = b"".join(chunk for s, chunk in data if s == stream)
        pieces = [e.data for e in delivered if isinstance(e, Output) and e.stream == stream]
        assert b"".join(pieces) == expected
        for index, piece in enumerate(pieces):
            assert 0 < len(piece) <= max_chunk
            last = index == len(pieces) - 1
            if not piece.endswith(b"\n") and not last:
                # Only a size split may end mid-line, and only when no line end fitted.
                assert b"\n" not in piece
                assert len(piece) > max_chunk - 4


async def test_notes_are_numbered_with_the_events(autojump_clock: trio.abc.Clock) -> None:
    """A note posted while an event is delivered follows it; one posted while the pump waits
    goes at once; `closing` may post notes that still precede Completed; later ones drop."""
    send, receive = trio.open_memory_channel[RunEvent](10)
    recorder = Recorder()
    pump: OutputPump | None = None

    async def deliver(event: SequencedEvent) -> None:
        await recorder.deliver(event)
        if isinstance(event, Output) and event.data == b"line\n":
            assert pump is not None
            pump.post("derived", b"from the line")

    def closing() -> None:
        assert pump is not None
        pump.post("last", b"")

    pump = OutputPump(receive, deliver, SupervisionConfig(), closing=closing)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump.run)
            await send.send(OutputChunk("stdout", b"line\n"))
            await trio.sleep(1)
            pump.post("idle", b"x")
            await trio.sleep(1)
            await send.send(DONE)
            await send.aclose()
    pump.post("after", b"")  # nothing follows the completion
    delivered = recorder.events
    assert [e.seq for e in delivered] == [1, 2, 3, 4, 5]
    assert [e.name for e in delivered if isinstance(e, Note)] == ["derived", "idle", "last"]
    assert isinstance(delivered[1], Note)
    assert isinstance(delivered[-1], CompletedEvent)
