"""A run as the client holds it: its event stream, its controls and its outcome.

Theory of operation
-------------------
The connection's reader puts each event of a run into that run's bounded channel
(`RunStream.send`). Iterating a `Run` takes events out of it. When nobody takes them the
channel fills, the reader waits on it and stops reading the socket, the daemon's send waits,
its pump stops, the child's pipe fills and the child blocks: back-pressure end to end, with
memory bounded by `ClientConfig.run_buffer` events. The price: the reader serves the whole
connection, so one run left unread also holds back every other run's events and every reply
on that connection. Read each run you start (or `close_stream()` it, after which its events
are dropped on arrival, or `wait()` for it, which drains it).

Events carry the server's sequence numbers; the stream remembers the last one it accepted,
drops any it has seen (a replay after reconnecting overlaps), and so delivers each event once.
"""

from __future__ import annotations

import base64
import signal as signal_module
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from cc_executor import protocol  # its names load on first use (a run's params, not all)
from cc_executor.executor.client.errors import ClientError, ConnectionLost, JournalUnreadable
from cc_executor.executor.client.events import Completed, JournalError, RunEvent, RunStatus
from cc_executor.protocol.notices import JOURNAL_UNREADABLE

if TYPE_CHECKING:
    from cc_executor.executor.client.connection import Connection


@attrs.define(eq=False)
class RunStream:
    """The reader's side of a run: where its events go and what has been seen."""

    run_id: str
    durable: bool
    send: trio.MemorySendChannel[RunEvent]
    receive: trio.MemoryReceiveChannel[RunEvent]
    last_seq: int = 0
    completed: Completed | None = None
    lost: ClientError | None = None
    discarding: bool = False
    done: trio.Event = attrs.field(factory=trio.Event)

    @classmethod
    def open(cls, run_id: str, durable: bool, buffer: int, last_seq: int = 0) -> RunStream:
        send, receive = trio.open_memory_channel[RunEvent](buffer)
        return cls(run_id, durable, send, receive, last_seq)

    @property
    def live(self) -> bool:
        return self.completed is None and self.lost is None

    async def deliver(self, event: RunEvent) -> None:
        """Accept an event from the reader; waits while the buffer is full."""
        if not self.live:
            return  # after the end: seen already
        if not isinstance(event, JournalError):  # not sequenced: it names a seq it lacks
            if event.seq <= self.last_seq:
                return  # replayed after a reconnect: seen already
            self.last_seq = event.seq
        if isinstance(event, Completed):
            self.completed = event
        if not self.discarding:
            try:
                await self.send.send(event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.discarding = True  # the consumer closed its end
        if self.completed is not None:
            self.finish()
        elif isinstance(event, JournalError) and event.ends_follow:  # nothing more comes
            reason = event.reason.removeprefix(JOURNAL_UNREADABLE).lstrip(": ")
            self.fail(JournalUnreadable(self.run_id, reason, self.last_seq))

    def fail(self, error: ClientError) -> None:
        """The stream cannot go on (connection gone for good, run gone on reattach)."""
        if self.live:
            self.lost = error
        self.finish()

    def finish(self) -> None:
        self.send.close()
        self.done.set()


class Run:
    """A handle on one run: `async for event in run`, controls, and `wait()`."""

    def __init__(self, connection: Connection, stream: RunStream, info: dict[str, Any]) -> None:
        self._connection = connection
        self._stream = stream
        self._iterated = False
        self.info = info  # the execute (or attach) result as the server sent it

    def __repr__(self) -> str:
        return f"<Run {self.id} last_seq={self.last_seq}>"

    @property
    def id(self) -> str:
        return self._stream.run_id

    @property
    def pid(self) -> int | None:
        pid = self.info.get("pid")
        return pid if isinstance(pid, int) else None

    @property
    def durable(self) -> bool:
        return self._stream.durable

    @property
    def last_seq(self) -> int:
        """The sequence number of the last event received for this run."""
        return self._stream.last_seq

    @property
    def completed(self) -> Completed | None:
        """The completion, once it has arrived."""
        return self._stream.completed

    # -- events ----------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[RunEvent]:
        return self.events()

    async def events(self) -> AsyncIterator[RunEvent]:
        """Every event of the run in order, ending with its `Completed`.

        Raises:
            ConnectionLost: the connection ended before the run did (and could not be
                re-established, for a durable run).
        """
        self._iterated = True
        receive = self._stream.receive
        while True:
            try:
                event = await receive.receive()
            except trio.EndOfChannel:
                if self._stream.completed is None:
                    raise self._stream.lost or ConnectionLost(
                        f"run {self.id}: stream ended"
                    ) from None
                return
            except trio.ClosedResourceError:
                return  # closed by close_stream()
            yield event
            if isinstance(event, Completed):
                return

    def close_stream(self) -> None:
        """Stop receiving this run's events: from now on they are dropped on arrival."""
        self._stream.discarding = True
        self._stream.receive.close()

    async def wait(self) -> Completed:
        """Wait for the run to end and return its completion.

        Unless another task iterates the run, the events before the completion are read and
        dropped here, so that waiting never stalls the connection.
        """
        if not self._iterated:
            async for _ in self.events():
                pass
        await self._stream.done.wait()
        if self._stream.completed is None:
            raise self._stream.lost or ConnectionLost(f"run {self.id}: stream ended")
        return self._stream.completed

    # -- controls --------------------------------------------------------------------------

    async def pause(self) -> None:
        """Stop every process of the run; returns once they are all stopped."""
        await self._connection.call_params(protocol.ControlParams("PAUSE", self.id))

    async def resume(self) -> None:
        """Continue every process of the run."""
        await self._connection.call_params(protocol.ControlParams("RESUME", self.id))

    async def cancel(self) -> str:
        """End the run through the cancel ladder; returns the rung that ended it."""
        result = await self._connection.call_params(protocol.ControlParams("CANCEL", self.id))
        return str(result.get("rung", ""))

    async def signal(self, sig: str | int) -> None:
        """Send a signal (`"USR1"`, `"SIGUSR1"` or a number) to every process of the run."""
        name = signal_module.Signals(sig).name if isinstance(sig, int) else sig
        await self._connection.call_params(protocol.SignalParams(self.id, name))

    async def write_stdin(self, data: bytes | str, *, eof: bool = False) -> int:
        """Write to the child's stdin (the run needs `stdin="pipe"`); returns once in the pipe."""
        result = await self._connection.call_params(stdin_params(self.id, data, eof))
        return int(result.get("bytes", 0))

    async def close_stdin(self) -> None:
        """Close the child's stdin: it reads end-of-file."""
        await self._connection.call_params(protocol.StdinParams(self.id, eof=True))

    async def status(self) -> RunStatus:
        """The run as the daemon sees it now."""
        return await self._connection.run_status(self.id)

    async def detach(self) -> None:
        """Leave a durable run running without us; its events stop coming."""
        await self._connection.detach(self.id)


def execute_params(
    command: str | Sequence[str],
    shell: bool,
    cwd: str | None,
    env: Mapping[str, str] | None,
    stdin: bool,
    timeout: float | None,
    *,
    idle_timeout: float | None,
    durable: bool,
) -> dict[str, Any]:
    """`execute`'s params on the wire (see `Connection.execute`); checked before sending.

    Raises:
        ValueError: params the protocol refuses.
    """
    params = protocol.ExecuteParams(
        command=command if isinstance(command, str) else None,
        argv=None if isinstance(command, str) else tuple(command),
        shell=shell,
        cwd=cwd,
        env=dict(env or {}),
        stdin="pipe" if stdin else "null",
        timeout=timeout,
        idle_timeout=idle_timeout,
    )
    raw = protocol.unstructure_params(params)
    if durable:
        raw["durable"] = True  # not in ExecuteParams yet: sent as a plain field
    return raw


def stdin_params(run: str, data: bytes | str, eof: bool) -> protocol.StdinParams:
    """Text as text; bytes as text when they are UTF-8, else as base64."""
    if isinstance(data, str):
        return protocol.StdinParams(run, data, "utf-8", eof)
    try:
        return protocol.StdinParams(run, data.decode("utf-8"), "utf-8", eof)
    except UnicodeDecodeError:
        return protocol.StdinParams(run, base64.b64encode(data).decode("ascii"), "base64", eof)
