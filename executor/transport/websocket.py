"""Our server side of a WebSocket: a thin trio connection over wsproto.

Why not trio-websocket here (the client library still uses it): its server connection queues
one message, and while that slot is full its reader stops reading — and stops answering pings.
A burst of requests, or one slow handler and two requests behind it, starved keepalives for
tens of seconds and client libraries dropped healthy connections.  It also sends text frames
only from ``str`` (binary output frames want ``bytes`` as they are), drops the TCP connection
on invalid UTF-8 (1006) where RFC 6455 wants 1007, and lets errors of its handshake reach
the listener.  Fixing that upstream means redesigning its reader and its queue; its own lower
layer, wsproto, is the sans-I/O protocol already, so the I/O shell we need is small and ours.
We keep its ``ConnectionClosed`` and ``CloseReason`` so code written against it keeps working.

Theory of operation
-------------------
One *reader* task (``serve_reader``, run by the connection boundary beside the session) owns
receiving.  It feeds bytes to wsproto and handles each event at once (yielding to the other
tasks every ``FAIR_EVENTS`` of one read: a read can hold ten thousand empty frames):

- a ping is answered at once, whatever the session is doing: by the reader itself when the
  socket is free and has room, else by a pong sender beside it, which waits for the socket
  with every pong due — the reader does not wait for a peer to read, so a client behind
  output it reads slowly still has its CANCEL and its close read.  Only a flood of pings
  (``PENDING_PONGS`` unsent) stops the reader until the sender has taken them;
- data frames are assembled into messages (one over ``max_message_bytes`` fails the
  connection with 1009 as soon as a frame header says so — the ``FrameGauge`` reads the
  lengths headers declare before wsproto takes the bytes, so none of that frame is held;
  fragments are joined as they come, so memory follows the payload however small the
  frames; one whose part does not fit in what the daemon lets all its
  connections assemble at once, the ``AssemblyBudget``, with 1013) and put in the inbound
  queue, bounded in bytes
  (``inbound_queue_bytes``).  While it is full the reader stops reading, so a client's TCP
  window closes: memory stays bounded, and the only thing that can delay a pong is a client
  with more than the bound of requests unread ahead of its ping;
- a close frame from the peer is answered and ends reading; its messages already queued can
  still be taken;
- with ``ping_interval`` (keepalive, off by default) a task beside the reader pings the peer
  that often and abandons the connection (1006) when the pong is ``ping_timeout`` late: a
  client that hung, or vanished without a FIN or RST, is dropped like one that reset;
- a protocol failure (invalid UTF-8 in a text frame: 1007; a malformed frame: 1002) fails the
  connection with wsproto's code.

The reader's own close frames (a reply, a failure) wait at most ``close_timeout`` for the
socket: a peer that closes behind output it never reads is abandoned then, not waited for.

Sending is serialized by one lock.  Data frames are framed here — a server never masks, we
never fragment and negotiate no extension, so a frame is a header and the payload as given,
``bytes`` without any ``str`` round trip, written together by one ``sendmsg`` without joining
them; several frames can go in one write (``send_frames``) — and control frames go through
wsproto, which tracks the close.  A send that is
cancelled part way leaves the peer a torn frame: the connection is then abandoned (1006),
never written to again.

Closing is bounded by ``close_timeout``: send the close frame and a FIN, keep reading (and
dropping) until the peer has replied or hung up, then close the socket.  Every error of the
socket means the peer is gone: it surfaces as ``ConnectionClosed`` with 1006, nothing else.
"""

from __future__ import annotations

import contextlib
import itertools
import select
from collections import deque
from collections.abc import Callable, Sequence

import attrs
import trio
from trio_websocket import CloseReason, ConnectionClosed
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.frame_protocol import Opcode

from cc_executor.executor.transport import sockio
from cc_executor.executor.transport.inbound import (
    ASSEMBLY_BYTES,
    AssemblyBudget,
    FrameGauge,
    InboundQueue,
    MessageParts,
    message_size,
)
from cc_executor.protocol.binary import BinaryParts
from cc_executor.protocol.codec import Utf8Text

__all__ = [
    "CloseReason",
    "ConnectionClosed",
    "InboundQueue",
    "ServerWebSocket",
    "WebSocketSettings",
]

ABNORMAL_CLOSURE = 1006  # RFC 6455 7.4.1: no close frame; never sent, only reported
MESSAGE_TOO_BIG = 1009
TRY_AGAIN_LATER = 1013  # IANA's WebSocket close code registry
# A payload at least this long goes out gathered with its header (sendmsg) instead of being
# copied behind it; a shorter one is cheaper to copy than a second buffer is to describe.
GATHER_BYTES = 16 * 1024
# Pongs waiting for a socket that is busy or full before the reader stops reading pings (at
# most 131 bytes each: a few KiB), far more than keepalives ever have in flight.
PENDING_PONGS = 64
# Events of one read handled before the reader lets other tasks run (a frame can be 6 bytes).
FAIR_EVENTS = 64


@attrs.frozen
class WebSocketSettings:
    """The numbers one WebSocket connection works with (from the daemon's configuration)."""

    max_message_bytes: int
    receive_buffer_bytes: int
    inbound_queue_bytes: int
    close_timeout: float
    # Keepalive: ping every `ping_interval` seconds (0: never), drop the connection (1006)
    # when the pong has not come `ping_timeout` seconds after.
    ping_interval: float = 0.0
    ping_timeout: float = 30.0
    # Shared by every connection of the daemon (one per WebSocketSettings).
    assembly: AssemblyBudget = attrs.field(factory=lambda: AssemblyBudget(ASSEMBLY_BYTES))


def frame_header(opcode: Opcode, length: int) -> bytes:
    """The header of a final, unmasked (server-to-client) frame (RFC 6455 5.2)."""
    first = 0x80 | opcode
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def text_frame(text: str) -> bytes:
    """A whole text frame of `text`, header and payload (final, unmasked)."""
    payload = text.encode()
    return frame_header(Opcode.TEXT, len(payload)) + payload


def _runs(parts: Sequence[bytes]) -> list[bytes]:
    """`parts` with each run of short ones joined: only a long payload stays a buffer of its
    own, so a write of many frames gathers as few buffers as it can without copying one."""
    gathered: list[bytes] = []
    short: list[bytes] = []
    for part in parts:
        if len(part) < GATHER_BYTES:
            short.append(part)
            continue
        if short:
            gathered.append(b"".join(short))
            short = []
        gathered.append(part)
    if short:
        gathered.append(b"".join(short))
    return gathered


async def _send_gathered(sock: trio.socket.SocketType, parts: list[bytes]) -> None:
    """Write every byte of `parts`, in order, with sendmsg (the socket is ours alone: the
    caller holds the send lock)."""
    views = [memoryview(part) for part in parts if part]
    while views:
        sent = await sock.sendmsg(views)
        while sent:
            if sent >= len(views[0]):
                sent -= len(views.pop(0))
            else:
                views[0] = views[0][sent:]
                sent = 0


class ServerWebSocket:
    """One accepted WebSocket: ``get_message``, ``send_message``, ``aclose``, ``closed``."""

    def __init__(
        self,
        stream: trio.SocketStream,
        protocol: Connection,
        *,
        path: str,
        subprotocol: str | None,
        settings: WebSocketSettings,
        early: bytes = b"",
    ) -> None:
        """`protocol` has accepted the upgrade; `early` is what the client sent right behind
        its request head (frames, read with the head), handled once the reader starts."""
        self.path = path
        self.subprotocol = subprotocol
        self._stream = stream
        self._protocol = protocol
        self._settings = settings
        self._inbound = InboundQueue(settings.inbound_queue_bytes)
        self._send_lock = trio.Lock()
        self._closed: CloseReason | None = None
        self._closing = False
        self._failed = False  # a protocol failure: the parser is done, input is dropped
        self._broken = False  # the socket failed, or a frame went out torn: never write again
        self._reading = True
        self._reader_done = trio.Event()
        self._when_closed: list[Callable[[], None]] = []
        self._early = early
        self._gauge = FrameGauge(settings.max_message_bytes)
        self._parts = MessageParts()
        self._pongs: deque[Event] = deque()  # for the pong sender
        self._pong_due = trio.Event()
        self._pong_room = trio.Event()
        self._pong_sending = False
        self._pong_sender: trio.Nursery | None = None  # its nursery, once a pong had to wait
        self._reader_nursery: trio.Nursery | None = None
        self._pong_awaited: tuple[bytes, trio.Event] | None = None  # the keepalive's ping

    @property
    def closed(self) -> CloseReason | None:
        """Why the connection closed (or is closing); None while it is open."""
        return self._closed

    def when_closed(self, callback: Callable[[], None]) -> None:
        """Call `callback` (which must not raise) once the reader has ended: the peer closed
        or is gone, or we closed; at once if it has already."""
        if self._reader_done.is_set():
            callback()
        else:
            self._when_closed.append(callback)

    # -- receiving -------------------------------------------------------------------------

    async def get_message(self) -> str | bytes:
        """The next message (``str`` from a text frame, ``bytes`` from a binary one).

        Raises:
            ConnectionClosed: the connection is closed and no message is left.
        """
        message = await self._inbound.get()
        if message is None:
            raise ConnectionClosed(self._closed)
        return message

    async def serve_reader(self) -> None:
        """Read until the connection ends (see the module docstring); never raises for the peer."""
        try:
            async with trio.open_nursery() as nursery:
                self._reader_nursery = nursery
                if self._settings.ping_interval > 0:
                    nursery.start_soon(self._keep_alive)
                await self._read()
                nursery.cancel_scope.cancel()  # the pong sender, if one had to start; keepalive
        finally:
            self._drop_parts()
            self._inbound.close()
            self._reader_done.set()
            for callback in self._when_closed:
                callback()

    async def _read(self) -> None:
        """Receive and handle events until reading ends."""
        early, self._early = self._early, b""
        if early:
            await self._receive(early)
        while self._reading:
            try:
                data = await sockio.receive_some(self._stream, self._settings.receive_buffer_bytes)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._gone("the peer closed the TCP connection")
                break
            await self._receive(data)

    async def _receive(self, data: bytes) -> None:
        """Handle bytes from the peer."""
        if self._failed:
            return  # drop what still comes until the peer hangs up
        too_big = self._gauge.feed(data)
        if too_big is None:
            self._protocol.receive_data(data)
            await self._handle_events()
            return
        # A header declares more than the limit: what came before it is handled, the frame
        # itself is refused before any of its payload is held.
        if too_big:
            self._protocol.receive_data(data[:too_big])
            await self._handle_events()
        if not self._failed and not self._closing:
            await self._too_big()

    async def _handle_events(self) -> None:
        for handled, event in enumerate(self._protocol.events(), 1):
            if handled % FAIR_EVENTS == 0:
                # One read can hold tens of thousands of tiny frames (empty fragments, pings):
                # let the other connections run between them, not only between reads.
                await trio.lowlevel.checkpoint()
            if isinstance(event, Ping):
                if self._protocol.state is ConnectionState.OPEN:
                    await self._answer_ping(event)
            elif isinstance(event, Pong):
                awaited = self._pong_awaited
                if awaited is not None and bytes(event.payload) == awaited[0]:
                    awaited[1].set()
            elif isinstance(event, TextMessage | BytesMessage):
                await self._message_part(event)
            elif isinstance(event, CloseConnection):
                await self._close_event(event)
                return

    async def _keep_alive(self) -> None:
        """Ping the peer every ping_interval; abandon it when a pong is ping_timeout late.

        Run in the reader's nursery, so it ends with reading.  The ping waits for the socket
        like any frame: a peer that does not read gets no pong in time and is dropped too,
        as the original's server (uvicorn's keepalive) dropped it."""
        interval, timeout = self._settings.ping_interval, self._settings.ping_timeout
        for count in itertools.count(1):
            await trio.sleep(interval)
            if self._closing or self._protocol.state is not ConnectionState.OPEN:
                return
            payload = b"ccx-keepalive-%d" % count
            answered = trio.Event()
            self._pong_awaited = (payload, answered)
            with trio.move_on_after(timeout):
                await self._send_control(Ping(payload))
                await answered.wait()
            self._pong_awaited = None
            if not answered.is_set():
                if not self._closing:
                    self.abandon(f"no pong within {timeout:g} s (keepalive)")
                return

    async def _answer_ping(self, ping: Ping) -> None:
        """Send the pong now if nothing holds the socket and it has room (a pong is at most
        131 bytes); else leave it to the pong sender, so the reader never waits for it."""
        if (
            not self._pongs
            and not self._pong_sending
            and not self._send_lock.locked()
            and self._writable()
        ):
            await self._send_control(ping.response())
            return
        while len(self._pongs) >= PENDING_PONGS:
            # A flood of pings: read no more until the sender has taken these (the peer's
            # window then closes, as for requests past the inbound queue's bound).
            self._pong_room = trio.Event()
            await self._pong_room.wait()
        self._pongs.append(ping.response())
        self._pong_due.set()
        if self._pong_sender is None and self._reader_nursery is not None:
            self._pong_sender = self._reader_nursery
            self._reader_nursery.start_soon(self._send_pongs)

    def _writable(self) -> bool:
        fd = self._stream.socket.fileno()
        if fd == -1:
            return False
        poller = select.poll()  # not select(): a daemon's descriptors go past FD_SETSIZE
        poller.register(fd, select.POLLOUT)
        return bool(poller.poll(0))

    async def _send_pongs(self) -> None:
        """Send the waiting pongs, in one write, whenever some are due (the reader's nursery
        cancels it)."""
        while True:
            await self._pong_due.wait()
            self._pong_due = trio.Event()
            pongs = list(self._pongs)
            self._pongs.clear()
            self._pong_room.set()
            if pongs and self._protocol.state is ConnectionState.OPEN:
                self._pong_sending = True  # later pongs wait for these, never overtake them
                try:
                    with contextlib.suppress(ConnectionClosed):  # the reader sees it too
                        await self._send(*(self._protocol.send(pong) for pong in pongs))
                finally:
                    self._pong_sending = False

    async def _message_part(self, event: TextMessage | BytesMessage) -> None:
        if self._closing:
            return  # we are closing: what the peer still sends is dropped
        data = event.data if isinstance(event.data, str | bytes) else bytes(event.data)
        size = message_size(data)
        if self._parts.bytes + size > self._settings.max_message_bytes:
            await self._too_big()  # the gauge saw it coming: this is its backstop
            return
        if not self._settings.assembly.take(size):
            self._drop_parts()
            await self._fail(
                TRY_AGAIN_LATER,
                "the daemon is receiving too many large messages at once: try again later",
            )
            return
        self._parts.add(data, size)
        if not event.message_finished:
            return
        message = self._parts.message(text=isinstance(event, TextMessage))
        self._drop_parts()  # the message is the inbound queue's to bound from here on
        await self._inbound.put(message)

    async def _too_big(self) -> None:
        self._drop_parts()
        limit = self._settings.max_message_bytes
        await self._fail(MESSAGE_TOO_BIG, f"message larger than {limit} bytes")

    def _drop_parts(self) -> None:
        """Forget the message being assembled, and give its bytes back to the budget."""
        self._settings.assembly.give(self._parts.bytes)
        self._parts = MessageParts()

    async def _close_event(self, event: CloseConnection) -> None:
        state = self._protocol.state
        if state is ConnectionState.REMOTE_CLOSING:
            # The peer closes: answer, and stop reading (the server closes TCP first).
            self._closed = self._closed or CloseReason(int(event.code), event.reason or None)
            self._closing = True
            await self._send_closing(event.response(), eof=False)
            self._reading = False
        elif state is ConnectionState.CLOSED:
            self._reading = False  # the reply to our own close: the handshake is complete
        else:
            # wsproto reports a protocol failure as a close it did not receive (state OPEN).
            await self._fail(int(event.code), event.reason or "protocol error")

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): close frame, FIN, drop the rest."""
        if self._closed is None:
            self._closed = CloseReason(code, reason)
        self._closing = True
        self._failed = True
        self._inbound.close()
        close = CloseConnection(code=code, reason=reason)
        await self._send_closing(close if self._protocol.state is ConnectionState.OPEN else None)

    async def _send_closing(self, close: CloseConnection | None, *, eof: bool = True) -> None:
        """The reader's close frame (its reply to the peer's, or the failure's) and FIN, within
        ``close_timeout``.  A peer that takes nothing more — its window shut behind output it
        never reads — would hold the reader, and the session that waits for it to end, for as
        long as it stays connected: it is abandoned instead (1006), and closing the socket
        ends any send stuck on it."""
        with trio.move_on_after(self._settings.close_timeout) as bound:
            if close is not None:
                await self._send_control(close)
            if eof:
                await self._send_eof()
        if bound.cancelled_caught:
            self._break("the peer took no close frame within close_timeout")
            self._stream.socket.close()

    def _gone(self, why: str) -> None:
        """The peer is gone without (finishing) the close handshake."""
        if self._closed is None:
            self._closed = CloseReason(ABNORMAL_CLOSURE, why)
        self._closing = True
        self._reading = False
        self._inbound.close()

    def _break(self, why: str) -> None:
        """The socket cannot be written to any more (failed, or a frame was cut short)."""
        self._broken = True
        self._gone(why)

    # -- sending ---------------------------------------------------------------------------

    async def send_message(self, message: str | bytes | Utf8Text) -> None:
        """Send one message: ``str`` (or protocol's ``Utf8Text``, its UTF-8 bytes) as a text
        frame, other ``bytes`` as a binary frame.

        Raises:
            ConnectionClosed: the connection is closed or closing.
        """
        if self._closed is not None:
            raise ConnectionClosed(self._closed)
        if isinstance(message, str):
            payload = message.encode()
            header = frame_header(Opcode.TEXT, len(payload))
        elif isinstance(message, Utf8Text):  # text already in UTF-8: sent as it is
            payload = message.data
            header = frame_header(Opcode.TEXT, len(payload))
        else:
            payload = message
            header = frame_header(Opcode.BINARY, len(payload))
        await self._send(header, payload)

    async def send_frames(self, frames: Sequence[str | Utf8Text | BinaryParts]) -> None:
        """Send several messages with one write, in order: the original's profile frames one
        notice as a message per line, and a Claude line goes out as its output and its typed
        events — one syscall (and one wake-up of the client) for all of them, not one each.
        ``str`` and ``Utf8Text`` are text frames, ``BinaryParts`` a binary one.

        Raises:
            ConnectionClosed: the connection is closed or closing.
        """
        if self._closed is not None:
            raise ConnectionClosed(self._closed)
        parts: list[bytes] = []
        for frame in frames:
            if isinstance(frame, str):
                payload = frame.encode()
                parts += (frame_header(Opcode.TEXT, len(payload)), payload)
            elif isinstance(frame, Utf8Text):
                parts += (frame_header(Opcode.TEXT, len(frame.data)), frame.data)
            else:
                size = len(frame.header) + len(frame.data)
                parts += (frame_header(Opcode.BINARY, size), frame.header, frame.data)
        await self._send(*parts)

    async def _send_control(self, event: Event) -> None:
        with contextlib.suppress(ConnectionClosed):  # the peer is gone: the reader sees it too
            await self._send(self._protocol.send(event))

    async def _send(self, *parts: bytes) -> None:
        """Send `parts` in order as one write: a frame's header and its payload go out
        together, and a long payload is not joined into a copy first (sendmsg gathers them).

        A free lock is taken without a trip through the scheduler (``async with lock``
        yields even then; the send that follows is the checkpoint), and waiters keep their
        order: a lock with waiters is not free to take."""
        await trio.lowlevel.checkpoint_if_cancelled()
        lock = self._send_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if self._broken:
                raise ConnectionClosed(self._closed)
            whole = False
            try:
                if all(len(part) < GATHER_BYTES for part in parts):
                    await sockio.send_all(self._stream, b"".join(parts))
                else:
                    await _send_gathered(self._stream.socket, _runs(parts))
                whole = True
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                self._break("the peer reset the connection")
                raise ConnectionClosed(self._closed) from None
            finally:
                if not whole:  # cancelled part way: the peer has a torn frame
                    self._break("a send was cut short")
        finally:
            lock.release()

    async def _send_eof(self) -> None:
        async with self._send_lock:
            if self._broken:
                return
            try:
                await self._stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._break("the peer reset the connection")

    # -- closing ---------------------------------------------------------------------------

    def abandon(self, why: str) -> None:
        """Drop the connection without a close handshake (1006): for a peer that has taken
        nothing for ``close_timeout``, whose close frame would only wait behind the frames it
        never read.  Closing the socket ends any send stuck on it, and the reader."""
        self._break(why)
        self._inbound.close(discard=True)
        if self._stream.socket.fileno() != -1:
            self._stream.socket.close()

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with `code`, bounded by ``close_timeout``; idempotent, never raises for the
        peer.  Queued messages are dropped (the caller is done reading)."""
        first = not self._closing
        if self._closed is None:
            self._closed = CloseReason(code, reason)
        self._closing = True
        self._inbound.close(discard=True)
        if self._stream.socket.fileno() == -1:
            return  # an earlier call went all the way: nothing is left to send, wait for or close
        with trio.move_on_after(self._settings.close_timeout):
            if first and self._protocol.state is ConnectionState.OPEN:
                await self._send_control(CloseConnection(code=code, reason=reason))
            if first and not self._reader_done.is_set():
                # Our FIN tells a peer that has not closed that nothing more comes; once the
                # reader is done (the peer's close answered, or the peer gone) the close below
                # sends it anyway.
                await self._send_eof()
            await self._reader_done.wait()
        # What SocketStream.aclose does, without its checkpoint (which aclose_forcefully's
        # cancelled scope turned into a Cancelled raised and caught, on every connection).
        self._stream.socket.close()
