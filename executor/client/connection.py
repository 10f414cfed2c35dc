"""One connection to a daemon: requests matched to replies, run events routed to their runs.

Theory of operation
-------------------
`open_connection` starts one background task, `serve`, in the connection's nursery. It opens
the WebSocket (handshake.py), waits for the `connected` greeting, and then is the connection's
only reader: each reply wakes the request with its id (requests.py), each run event goes to its
run's `RunStream` (see run.py for back-pressure), and nothing else reads the socket. Callers
send their own requests (trio-websocket serialises sends) and wait for their reply.

A reply to a method that starts a run registers the run *in the reader*, before the next
frame is read, so that no event of the run can arrive before its stream exists. `attach`
registers the stream before sending, as replayed events may precede the reply.

Closing is one handshake, owned by `_serve_socket`: `aclose` (leaving `open_connection`)
cancels only the read loop; `_serve_socket` then sends the close frame and waits (at most
`disconnect_timeout`) for the daemon's answer, which trio-websocket reads in its own task in the
socket's nursery; so that nursery is cancelled only after the handshake: a client leaves as
soon as the daemon has answered, never by waiting out the bound.

When the socket goes, every waiting request fails with `ConnectionLost` (whether the server
acted on it cannot be known). If a durable run is still live, `serve` reconnects (bounded
attempts with doubling delays, from `ClientConfig`) and re-attaches each such run from the last
sequence number it received; the stream drops the overlap, so a caller iterating the run sees
one unbroken stream. Otherwise, or when reconnecting fails, every live run's stream ends with
`ConnectionLost`.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from cc_executor import protocol  # its names load on first use: `ccx ps` needs none of them
from cc_executor.executor.client.config import DEFAULT_URL, ClientConfig
from cc_executor.executor.client.errors import (
    ClientError,
    ConnectionLost,
    DaemonUnavailable,
    NotADaemon,
    ServerError,
)
from cc_executor.executor.client.events import (
    Completed,
    DaemonStatus,
    Greeting,
    RunStatus,
    ShutdownNotice,
)
from cc_executor.executor.client.handshake import (
    binary_output,
    check_url,
    open_socket,
    refusal_in,
    sole_exception,
)
from cc_executor.executor.client.inbound import (
    Draining,
    Event,
    Failure,
    Greeted,
    Inbound,
    Other,
    Result,
    daemon_status,
    parse_frame,
    run_status,
)
from cc_executor.executor.client.requests import RUN_STARTS, Pending, Requests
from cc_executor.executor.client.run import Run, RunStream, execute_params

log = logging.getLogger(__name__)  # a library's: unconfigured, errors go to stderr, not stdout

DURABLE_RUNS = frozenset({"durable", "attach"})  # announced by a daemon whose runs outlive us


class Connection:
    """A connection to a daemon; make one with `open_connection`."""

    def __init__(self, url: str, token: str | None, config: ClientConfig) -> None:
        check_url(url)
        self.url = url
        self.config = config
        self._token = token
        self._requests = Requests(config.request_timeout)
        self._streams: dict[str, RunStream] = {}
        self._ws: WebSocketConnection | None = None
        self._ready = trio.Event()  # set while a socket is usable, or once we are finished
        self._closing = False
        # The read loop of the socket in use; `aclose` cancels it to start the close handshake.
        self._reading: trio.CancelScope | None = None
        self._socket_closed = trio.Event()  # set once the socket in use has been closed
        self._greeting: Greeting | None = None
        self.reconnects = 0
        self.shutdown_notice: ShutdownNotice | None = None  # the daemon said it is draining
        self._shutdown = trio.Event()

    # -- what the server said about itself -------------------------------------------------

    @property
    def greeting(self) -> Greeting:
        assert self._greeting is not None, "not connected"
        return self._greeting

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(self.greeting.capabilities)

    @property
    def supports_durable(self) -> bool:
        return self.capabilities >= DURABLE_RUNS

    @property
    def binary_output(self) -> bool:
        """The socket in use carries output as binary frames (negotiated at connect)."""
        return self._ws is not None and binary_output(self._ws)

    @property
    def shutting_down(self) -> bool:
        """The daemon has said it is draining."""
        return self.shutdown_notice is not None

    async def wait_shutdown(self) -> ShutdownNotice:
        """Wait for the daemon to say it is draining (its runs then end within the grace)."""
        await self._shutdown.wait()
        assert self.shutdown_notice is not None
        return self.shutdown_notice

    # -- methods ---------------------------------------------------------------------------

    async def execute(
        self,
        command: str | Sequence[str],
        *,
        shell: bool = False,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - the run's limit, kept by the daemon
        idle_timeout: float | None = None,
        durable: bool = False,
    ) -> Run:
        """Start a run: `command` is a command line (a string) or an argv (a list).

        `stdin=True` keeps the child's stdin open for `Run.write_stdin`. A `durable` run
        outlives this connection (the daemon must announce the `durable` capability).

        Raises:
            ValueError: params the protocol refuses (checked here, before sending).
            PolicyRefusedError, SpawnFailedError, LimitExceededError, ...: the daemon's answer.
        """
        raw = execute_params(
            command, shell, cwd, env, stdin, timeout, idle_timeout=idle_timeout, durable=durable
        )
        return await self.start_run("execute", raw, durable=durable)

    async def start_run(self, method: str, params: Mapping[str, Any], *, durable: bool) -> Run:
        """Call a method that starts a run (`execute`, `claude`, `claude.resume`): its Run."""
        result = await self._request(Pending(method, durable=durable), params)
        return Run(self, self._streams[str(result["run"])], result)

    async def attach(self, run: str, from_seq: int = 0) -> Run:
        """Follow a run started elsewhere: every event after `from_seq`, then live ones."""
        stream = RunStream.open(run, True, self.config.run_buffer, from_seq)
        try:
            pending = Pending("attach", stream=stream)
            result = await self._request(pending, {"run": run, "from_seq": from_seq})
        except BaseException:
            if self._streams.get(run) is stream:  # attached, but the caller gave up after
                del self._streams[run]
            stream.finish()
            raise
        if result.get("state") == "completed" and result.get("last_seq") == from_seq:
            await self._held_completion(stream)
        return Run(self, stream, result)

    async def _held_completion(self, stream: RunStream) -> None:
        """Attached to a completed run from its last seq: nothing follows the attach result
        (the caller has the completion), so end the stream with the completion `status`
        reports, rather than leave `wait()` and iteration waiting for an event that never
        comes."""
        try:
            status = await self.run_status(stream.run_id)
        except BaseException:
            stream.finish()
            raise
        if status.completion is None:  # not answered as completed: cannot happen, but ends
            stream.fail(ConnectionLost(f"run {stream.run_id}: completed without a completion"))
            return
        stream.last_seq = status.last_seq
        stream.completed = Completed(stream.run_id, status.last_seq, status.completion)
        stream.finish()

    async def detach(self, run: str) -> None:
        """Stop following a durable run; it goes on in the daemon."""
        await self.call("detach", {"run": run})
        stream = self._streams.pop(run, None)
        if stream is not None:
            stream.fail(ConnectionLost(f"run {run}: detached"))

    async def list(self) -> builtins.list[RunStatus]:
        """The runs the daemon shows this connection, live and recently finished: every
        page of them (a daemon sends `list` a page at a time, each far under a frame limit;
        one without pages answers all at once, without `next`)."""
        runs: builtins.list[RunStatus] = []
        params: dict[str, Any] = {}
        while True:
            result = await self.call("list", params)
            runs += [run_status(raw) for raw in result.get("runs", [])]
            after = result.get("next")
            if not isinstance(after, str):
                return runs
            params = {"after": after}

    async def status(self) -> DaemonStatus:
        """The daemon's health: uptime, connections, live runs, draining."""
        return daemon_status(await self.call_params(protocol.StatusParams()))

    async def run_status(self, run: str) -> RunStatus:
        """One run as the daemon sees it now."""
        return run_status(await self.call_params(protocol.StatusParams(run)))

    async def call_params(self, params: protocol.Params) -> dict[str, Any]:
        """Call the method a params object belongs to; return its result."""
        method = protocol.METHOD_OF[type(params)]
        return await self.call(method, protocol.unstructure_params(params))

    async def call(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Call any method with plain params; return its result or raise its error."""
        return await self._request(Pending(method), params)

    async def ping(self) -> None:
        """Return once the daemon answers a WebSocket ping: its reader answers one at once,
        whatever its runs are doing, so a ping left unanswered means the daemon itself is not
        answering (stopped, its event loop blocked) — its TCP peer, the kernel, may still be.

        Raises:
            ConnectionLost: no socket is in use (closed, or reconnecting: a connection that
                reconnects has one again later), or it went before the answer.
        """
        ws, closed = self._ws, self._socket_closed
        if ws is None:
            raise ConnectionLost(f"no connection to {self.url} now")
        answered = False
        async with trio.open_nursery() as nursery:

            async def pong() -> None:
                nonlocal answered
                with contextlib.suppress(ConnectionClosed):
                    await ws.ping()
                    answered = True
                nursery.cancel_scope.cancel()

            async def gone() -> None:
                await closed.wait()  # a closed socket never answers its pings
                nursery.cancel_scope.cancel()

            nursery.start_soon(pong)
            nursery.start_soon(gone)
        if not answered:
            raise ConnectionLost(f"the connection to {self.url} was lost")

    # -- requests --------------------------------------------------------------------------

    async def _request(self, pending: Pending, params: Mapping[str, Any]) -> dict[str, Any]:
        await self._ready.wait()
        ws = self._ws
        if ws is None:
            raise ConnectionLost(f"the connection to {self.url} is closed")
        return await self._requests.send(ws, pending, params)

    # -- the reader ------------------------------------------------------------------------

    async def _dispatch(self, message: Inbound) -> None:
        match message:
            case Event(event=event):
                stream = self._streams.get(event.run)
                if stream is not None:
                    await stream.deliver(event)
            case Result(id=request_id, result=result):
                pending = self._requests.find(request_id)
                if pending is None:
                    return  # its caller gave up (cancelled or timed out)
                if pending.stream is not None:  # an attach: its events follow this result
                    self._streams[pending.stream.run_id] = pending.stream
                elif pending.method in RUN_STARTS:
                    run_id = str(result["run"])
                    self._streams[run_id] = RunStream.open(
                        run_id, pending.durable, self.config.run_buffer
                    )
                pending.resolve(result)
            case Failure(id=request_id, error=error):
                pending = self._requests.find(request_id)
                if pending is not None:
                    pending.reject(error)
                elif request_id is None:  # the daemon could not read one of our requests
                    log.error(
                        "the daemon could not read a request: %s (error %s)", error, error.code
                    )
                # else: its caller gave up waiting (cancelled or timed out); nothing to do
            case Greeted(greeting=greeting):
                self._greeting = greeting
                bound = greeting.limits.get("max_message_bytes")
                self._requests.max_message_bytes = bound if isinstance(bound, int) else None
            case Draining(notice=notice):
                self.shutdown_notice = notice
                self._shutdown.set()
            case Other():
                pass

    async def _read(self, ws: WebSocketConnection) -> None:
        binary = binary_output(ws)
        while True:
            try:
                frame = await ws.get_message()
            except ConnectionClosed:
                return
            for message in parse_frame(frame, binary=binary):
                await self._dispatch(message)

    # -- the socket's life -----------------------------------------------------------------

    async def _connect(self, nursery: trio.Nursery) -> WebSocketConnection:
        """Open the socket and read the greeting (handshake.py says who answered if not)."""
        ws, messages = await open_socket(nursery, self.url, self._token, self.config)
        for message in messages:
            await self._dispatch(message)
        if self._greeting is None:
            raise NotADaemon(self.url, "no `connected` greeting")
        return ws

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the connection (reconnecting while durable runs need it); read it.

        Raises:
            DaemonUnavailable: the first connection could not be made (before `started`).
        """
        failures, first = 0, True
        unreachable: DaemonUnavailable | None = None  # the last reconnect's failure
        while True:
            try:
                failure = await self._serve_socket(task_status if first else None)
            except BaseExceptionGroup as group:
                failure = refusal_in(self.url, group)
                if failure is None:
                    raise
            if isinstance(failure, DaemonUnavailable):
                if first:
                    raise failure
                failures += 1
                unreachable = failure
            elif failure is not None:  # the daemon broke the protocol: do not retry
                log.error("the daemon at %s broke the protocol: %s", self.url, failure)
                self._finish(ConnectionLost(str(failure)))
                return
            else:
                first, failures = False, 0
            self._requests.fail_all(ConnectionLost(f"the connection to {self.url} was lost"))
            if self._closing or not any(s.durable and s.live for s in self._streams.values()):
                break
            if failures > self.config.reconnect_attempts:
                break
            delay = self.config.reconnect_delay * 2 ** max(failures - 1, 0)
            await trio.sleep(min(delay, self.config.reconnect_delay_max))
        if failures and unreachable is not None:
            lost = ConnectionLost(
                f"the connection to {self.url} was lost, and {failures} attempt(s) to "
                f"reconnect failed ({unreachable.reason})",
                unreachable=unreachable,
            )
        else:
            lost = ConnectionLost(f"the connection to {self.url} was lost")
        self._finish(lost)

    async def _serve_socket(self, task_status: trio.TaskStatus[None] | None) -> ClientError | None:
        """One socket from connect to close; returns why it could not go on, if not a close.

        Nothing is raised through the nursery (trio would wrap it in an ExceptionGroup), but
        a refused upgrade, which trio-websocket raises in its reader task, our nursery's child.
        """
        async with trio.open_nursery() as nursery:
            try:
                ws = await self._connect(nursery)
            except DaemonUnavailable as exc:
                nursery.cancel_scope.cancel()
                return exc
            self._ws = ws
            self._socket_closed = trio.Event()
            self._reading = trio.CancelScope()
            self._ready.set()
            if task_status is not None:
                task_status.started()
            else:
                nursery.start_soon(self._reattach)
            try:
                with self._reading:
                    await self._read(ws)
            except ClientError as exc:
                return exc
            finally:
                self._ws = None
                self._reading = None
                self._ready = trio.Event()
                # The handshake needs trio-websocket's reader, a task of this nursery: close
                # first (this returns once the daemon's close frame is in), cancel after.
                with trio.move_on_after(self.config.disconnect_timeout, shield=True):
                    await ws.aclose()
                self._socket_closed.set()
                nursery.cancel_scope.cancel()
        return None

    async def _reattach(self) -> None:
        """After a reconnect: follow every live durable run again from its last seq."""
        self.reconnects += 1
        for stream in list(self._streams.values()):
            if not (stream.durable and stream.live):
                continue
            try:
                await self.call("attach", {"run": stream.run_id, "from_seq": stream.last_seq})
            except ServerError as exc:
                stream.fail(exc)
            except ConnectionLost:
                return  # lost again: the next round tries again

    def _finish(self, error: ClientError) -> None:
        """No socket any more, for good: fail every request and every live stream."""
        self._ws = None
        self._requests.fail_all(error)
        for stream in self._streams.values():
            stream.fail(error)
        self._ready.set()

    async def aclose(self) -> None:
        """Close the socket with a close handshake (shielded, bounded); live runs' streams end."""
        self._closing = True
        if self._reading is None:
            return  # no socket in use (never opened, or between reconnect attempts)
        self._reading.cancel()
        with trio.move_on_after(self.config.disconnect_timeout, shield=True):
            await self._socket_closed.wait()


@asynccontextmanager
async def open_connection(
    url: str = DEFAULT_URL, *, token: str | None = None, config: ClientConfig | None = None
) -> AsyncIterator[Connection]:
    """Connect to a daemon; leaving the block closes the connection.

    Raises:
        InvalidUrl: `url` cannot name a daemon (nothing is sent).
        DaemonUnavailable: nothing answered at `url` as a cc-executor daemon; its subclasses
            `HandshakeRefused` (the daemon said no, in its words) and `NotADaemon` say who did.
    """
    connection = Connection(url, token, config or ClientConfig())
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(connection.serve)
            try:
                yield connection
            finally:
                await connection.aclose()
                nursery.cancel_scope.cancel()
                connection._finish(ConnectionLost(f"the connection to {url} is closed"))
    except BaseExceptionGroup as group:
        # The nursery is ours, not the caller's: hand back the one real exception as raised.
        sole = sole_exception(group)
        if sole is None:
            raise
        raise sole from None
