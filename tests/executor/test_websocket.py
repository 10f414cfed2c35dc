"""Our server WebSocket (transport/websocket.py): frames, the inbound bound, the close bound."""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing
from transport_testing import serving
from trio_websocket import open_websocket_url

from bench.rawws import open_raw_websocket
from cc_executor.executor.transport.connection import ConnectionSession, SessionOpener
from cc_executor.executor.transport.frontdoor import Gate, Peer
from cc_executor.executor.transport.websocket import InboundQueue, ServerWebSocket
from cc_executor.protocol import JsonRpcError
from cc_executor.protocol.binary import BinaryParts
from cc_executor.protocol.codec import Utf8Text

# A message to send, or (a list) several to send with one `send_frames`.
Outgoing = str | bytes | list[str | Utf8Text | BinaryParts]


class Talker:
    """A session kind that sends what it was built with, then waits for the client to go."""

    def __init__(self, ws: ServerWebSocket, messages: Sequence[Outgoing]) -> None:
        self.ws = ws
        self.messages = messages
        self.session_id = "talker"

    async def serve(self) -> None:
        for message in self.messages:
            if isinstance(message, list):
                await self.ws.send_frames(message)
            else:
                await self.ws.send_message(message)
        while True:
            await self.ws.get_message()

    async def shut(self, reason: str) -> None:
        await self.ws.aclose(1001, reason)

    def opening(self) -> None:
        return None  # it sends its own first message

    def farewell(self, error: JsonRpcError) -> None:
        return None


def talking(messages: Sequence[Outgoing]) -> SessionOpener[ConnectionSession]:
    def open_session(ws: ServerWebSocket, peer: Peer) -> ConnectionSession:
        return Talker(ws, messages)

    return open_session


async def test_bytes_go_as_binary_frames_and_str_as_text_of_every_length() -> None:
    sizes = (0, 125, 126, 65535, 65536, 300_000)
    messages: list[str | bytes] = [
        bytes(range(256)) * (n // 256) + b"\xff" * (n % 256) for n in sizes
    ]
    messages += ["é" * n for n in sizes]
    with trio.fail_after(20):
        async with (
            serving(Gate(paths=("/",)), session_kind=talking(messages)) as door,
            open_websocket_url(f"ws://127.0.0.1:{door.port}/", max_message_size=1 << 21) as ws,
        ):
            received = [await ws.get_message() for _ in messages]
    assert received == messages
    assert [type(message) for message in received] == [bytes] * len(sizes) + [str] * len(sizes)


async def test_frames_sent_together_arrive_in_order_each_as_its_own_message() -> None:
    # Short and long (gathered, not copied) payloads mixed, text from str and from UTF-8
    # bytes, binary from a header and the data apart; and many frames in one write.
    long = 70_000
    together: list[str | Utf8Text | BinaryParts] = [
        "short",
        Utf8Text(("ü" * long).encode()),
        BinaryParts(b"head", b"\x00" * long),
        BinaryParts(b"h", b""),
        Utf8Text(b""),
        "x" * long,
        "tail",
    ]
    many: list[str | Utf8Text | BinaryParts] = [f"line {i}" for i in range(3000)]
    many[1500] = "y" * long
    with trio.fail_after(20):
        async with (
            serving(Gate(paths=("/",)), session_kind=talking([together, "alone", many])) as door,
            open_websocket_url(f"ws://127.0.0.1:{door.port}/", max_message_size=1 << 21) as ws,
        ):
            received = [await ws.get_message() for _ in range(len(together) + 1 + len(many))]
    expected: list[str | bytes] = [
        "short",
        "ü" * long,
        b"head" + b"\x00" * long,
        b"h",
        "",
        "x" * long,
        "tail",
        "alone",
        *(frame for frame in many if isinstance(frame, str)),
    ]
    assert received == expected


async def test_the_inbound_queue_is_bounded_in_bytes_and_lets_one_big_message_in() -> None:
    queue = InboundQueue(max_bytes=1000)
    admitted: list[int] = []

    async def put_all() -> None:
        for size in (400, 400, 400, 5000):
            await queue.put(b"x" * size)
            admitted.append(size)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(put_all)
        await trio.testing.wait_all_tasks_blocked()
        assert admitted == [400, 400]  # a third would pass the bound
        assert queue.queued_bytes <= 1000
        assert await queue.get() == b"x" * 400
        await trio.testing.wait_all_tasks_blocked()
        assert admitted == [400, 400, 400]
        assert await queue.get() == b"x" * 400
        assert await queue.get() == b"x" * 400
        await trio.testing.wait_all_tasks_blocked()
        assert admitted == [400, 400, 400, 5000]  # alone in the queue, any size gets in
        queue.close()
    assert await queue.get() == b"x" * 5000
    assert await queue.get() is None


async def test_a_take_cancelled_at_its_checkpoint_leaves_the_message_queued() -> None:
    # A message waiting already is taken without parking; the checkpoint comes before it is
    # taken, so a cancel there loses nothing (it used to be taken first, then lost).
    queue = InboundQueue(max_bytes=1000)
    await queue.put(b"kept")
    with trio.CancelScope() as scope:
        scope.cancel()
        await queue.get()
    assert scope.cancelled_caught
    assert queue.queued_bytes > 0
    assert await queue.get() == b"kept"


async def test_a_peer_that_never_answers_the_close_is_let_go_after_close_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    closed = trio.Event()

    class Closer(Talker):
        async def serve(self) -> None:
            await self.ws.aclose(1000, "bye")  # the peer never answers: bounded
            closed.set()

    with trio.fail_after(60):
        async with (
            serving(
                Gate(paths=("/",)),
                session_kind=lambda ws, peer: Closer(ws, []),
            ) as door,
            open_raw_websocket(door.port) as raw,
        ):
            opcode, payload = await raw.read_frame()
            assert (opcode, payload[:2]) == (0x8, (1000).to_bytes(2, "big"))
            await closed.wait()  # without a reply from us, after close_timeout
            assert await raw.stream.receive_some(1) == b""


def test_the_frame_gauge_finds_the_header_that_goes_over_however_the_bytes_are_split() -> None:
    from bench.rawws import client_frame
    from cc_executor.executor.transport.inbound import FrameGauge

    ping = client_frame(0x9, b"p" * 125)
    fits = client_frame(0x1, b"x" * 300, final=False) + ping + client_frame(0x0, b"y" * 700)
    over = client_frame(0x2, b"z" * 600, final=False) + ping + client_frame(0x0, b"w" * 500)
    stream = fits + over
    at = len(fits) + len(client_frame(0x2, b"z" * 600, final=False)) + len(ping)
    header = 2 + 2 + 4  # of the frame that goes over: a 2-byte length, a mask
    for split in range(len(stream) + 1):
        gauge = FrameGauge(1000)
        first = gauge.feed(stream[:split])
        if split >= at + header:
            assert first == at
            continue
        assert first is None
        # Its offset in the second part; 0 when the header began in the first.
        assert gauge.feed(stream[split:]) == max(at - split, 0)


async def test_a_read_of_many_tiny_frames_lets_other_tasks_run_between_them() -> None:
    # Observed: the reader handled every frame of a read before anything else ran; a client
    # flooding empty fragments (6 bytes each, tens of thousands per read) held the event loop
    # for ~170 ms a read, and other connections' requests waited that long.  Counted here as
    # turns of another task, not as time.
    from bench.rawws import client_frame

    frames = 40_000
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    with trio.fail_after(60):
        async with (
            serving(Gate(paths=("/",))) as door,
            open_raw_websocket(door.port) as raw,
            trio.open_nursery() as nursery,
        ):
            await raw.read_frame()  # hello
            empty = client_frame(0x0, b"", final=False)
            flood = client_frame(0x1, b"[", final=False) + empty * frames + client_frame(0x0, b"]")
            nursery.start_soon(ticker)
            await raw.stream.send_all(flood)
            assert await raw.read_frame() == (0x1, b"[]")
            nursery.cancel_scope.cancel()
    # One turn at least per 128 frames (the reader yields every 64 events); without that,
    # about one per read of 4 KiB (680 frames).
    assert turns > frames // 128
