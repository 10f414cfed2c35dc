"""One connection to a daemon: requests matched to replies, run events routed to their runs.

Theory of operation
-------------------
`open_connection` starts one background task, `_serve`, in the connection's nursery. It opens
the WebSocket, waits for the `connected` greeting, and then is the connection's only reader:
each reply resolves the `_Pending` request with its id, each run event goes to its run's
`RunStream` (see run.py for back-pressure), and nothing else reads the socket. Callers send
their own requests (trio-websocket serialises sends) and wait for their `_Pending`.

A reply to `execute` registers the new run *in the reader*, before the next frame is read, so
that no event of the run can arrive before its stream exists. `attach` registers the stream
before sending, as replayed events may precede the reply.

Closing is one handshake, owned by `_serve_socket`: `aclose` (leaving `open_connection`)
cancels only the read loop; `_serve_socket` then sends the close frame and waits, bounded by
`disconnect_timeout`, for the daemon's answer. trio-websocket reads that answer in its own task
inside the socket's nursery, so the nursery is cancelled only once the handshake is over: a
client leaves as soon as the daemon has answered, never by waiting out the bound.

When the socket goes, every waiting request fails with `ConnectionLost` (whether the server
acted on it cannot be known). If a durable run is still live, `_serve` reconnects (bounded
attempts with doubling delays, from `ClientConfig`) and re-attaches each such run from the last
sequence number it received; the stream drops the overlap, so a caller iterating the run sees
one unbroken stream. Otherwise, or when reconnecting fails, every live run's stream ends with
`ConnectionLost`.
"""

from __future__ import annotations

import builtins
import itertools
import logging
import os
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    connect_websocket_url,
)

from cc_executor.executor.client.config import DEFAULT_URL, ClientConfig
from cc_executor.executor.client.errors import (
    ClientError,
    ConnectionLost,
    DaemonUnavailable,
    HandshakeRefused,
    InvalidUrl,
    NotADaemon,
    ProtocolViolation,
    ServerError,
)
from cc_executor.executor.client.events import DaemonStatus, Greeting, RunStatus, ShutdownNotice
from cc_executor.executor.client.inbound import (
    Connected,
    Event,
    Failure,
    Inbound,
    Other,
    Result,
    Shutdown,
    daemon_status,
    parse_frame,
    run_status,
)
from cc_executor.executor.client.run import Run, RunStream
from cc_executor.protocol import (
    METHOD_OF,
    ExecuteParams,
    ListParams,
    Params,
    Request,
    StatusParams,
    encode_message,
    unstructure_params,
)

# A library logs through the standard library: a script that never configures logging gets
# warnings on stderr (never on stdout), and importing it stays cheap for `ccx`.
log = logging.getLogger(__name__)

# Capabilities a daemon announces once it keeps runs beyond their connection.
DURABLE = "durable"
ATTACH = "attach"


@attrs.define(eq=False)
class _Pending:
    """A request waiting for its reply."""

    method: str
    durable: bool = False
    result: dict[str, Any] | None = None
    error: ClientError | None = None
    done: trio.Event = attrs.field(factory=trio.Event)


class Connection:
    """A connection to a daemon; make one with `open_connection`."""

    def __init__(self, url: str, token: str | None, config: ClientConfig) -> None:
        check_url(url)
        self.url = url
        self.config = config
        self._token = token
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
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
        return self.greeting.capabilities

    @property
    def supports_durable(self) -> bool:
        return DURABLE in self.capabilities and ATTACH in self.capabilities

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
        params = ExecuteParams(
            command=command if isinstance(command, str) else None,
            argv=None if isinstance(command, str) else tuple(command),
            shell=shell,
            cwd=cwd,
            env=dict(env or {}),
            stdin="pipe" if stdin else "null",
            timeout=timeout,
            idle_timeout=idle_timeout,
        )
        raw = unstructure_params(params)
        if durable:
            raw["durable"] = True  # not in ExecuteParams yet: sent as a plain field
        pending = _Pending("execute", durable=durable)
        result = await self._request(pending, raw)
        return Run(self, self._streams[str(result["run"])], result)

    async def attach(self, run: str, from_seq: int = 0) -> Run:
        """Follow a run started elsewhere: every event after `from_seq`, then live ones."""
        stream = RunStream.open(run, True, self.config.run_buffer, from_seq)
        previous = self._streams.get(run)
        self._streams[run] = stream
        try:
            result = await self.call("attach", {"run": run, "from_seq": from_seq})
        except BaseException:
            if previous is not None:
                self._streams[run] = previous
            else:
                self._streams.pop(run, None)
            stream.finish()
            raise
        return Run(self, stream, result)

    async def detach(self, run: str) -> None:
        """Stop following a durable run; it goes on in the daemon."""
        await self.call("detach", {"run": run})
        stream = self._streams.pop(run, None)
        if stream is not None:
            stream.fail(ConnectionLost(f"run {run}: detached"))

    async def list(self) -> builtins.list[RunStatus]:
        """The runs the daemon shows this connection, live and recently finished."""
        result = await self.call_params(ListParams())
        return [run_status(raw) for raw in result.get("runs", [])]

    async def status(self) -> DaemonStatus:
        """The daemon's health: uptime, connections, live runs, draining."""
        return daemon_status(await self.call_params(StatusParams()))

    async def run_status(self, run: str) -> RunStatus:
        """One run as the daemon sees it now."""
        return run_status(await self.call_params(StatusParams(run)))

    async def call_params(self, params: Params) -> dict[str, Any]:
        """Call the method a params object belongs to; return its result."""
        return await self.call(METHOD_OF[type(params)], unstructure_params(params))

    async def call(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Call any method with plain params; return its result or raise its error."""
        return await self._request(_Pending(method), params)

    # -- requests --------------------------------------------------------------------------

    async def _request(self, pending: _Pending, params: Mapping[str, Any]) -> dict[str, Any]:
        await self._ready.wait()
        ws = self._ws
        if ws is None:
            raise ConnectionLost(f"the connection to {self.url} is closed")
        request_id = next(self._ids)
        self._pending[request_id] = pending
        try:
            try:
                await ws.send_message(encode_message(Request(request_id, pending.method, params)))
            except ConnectionClosed:
                raise ConnectionLost(f"the connection to {self.url} closed") from None
            if self.config.request_timeout is None:
                await pending.done.wait()
            else:
                with trio.fail_after(self.config.request_timeout):
                    await pending.done.wait()
        finally:
            self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def _fail_pending(self, error: ClientError) -> None:
        for pending in self._pending.values():
            if not pending.done.is_set():
                pending.error = error
                pending.done.set()
        self._pending.clear()

    # -- the reader ------------------------------------------------------------------------

    async def _dispatch(self, message: Inbound) -> None:
        match message:
            case Event(event=event):
                stream = self._streams.get(event.run)
                if stream is not None:
                    await stream.deliver(event)
            case Result(id=request_id, result=result):
                pending = self._pending.get(request_id) if isinstance(request_id, int) else None
                if pending is None:
                    return  # its caller gave up (cancelled or timed out)
                if pending.method == "execute":
                    run_id = str(result["run"])
                    self._streams[run_id] = RunStream.open(
                        run_id, pending.durable, self.config.run_buffer
                    )
                pending.result = result
                pending.done.set()
            case Failure(id=request_id, error=error):
                pending = self._pending.get(request_id) if isinstance(request_id, int) else None
                if pending is not None:
                    pending.error = error
                    pending.done.set()
                elif request_id is None:  # the daemon could not read one of our requests
                    log.error(
                        "the daemon could not read a request: %s (error %s)", error, error.code
                    )
                # else: its caller gave up waiting (cancelled or timed out); nothing to do
            case Connected(greeting=greeting):
                self._greeting = greeting
            case Shutdown(notice=notice):
                self.shutdown_notice = notice
                self._shutdown.set()
            case Other():
                pass

    async def _read(self, ws: WebSocketConnection) -> None:
        while True:
            try:
                frame = await ws.get_message()
            except ConnectionClosed:
                return
            for message in parse_frame(frame):
                await self._dispatch(message)

    # -- the socket's life -----------------------------------------------------------------

    def _headers(self) -> builtins.list[tuple[bytes, bytes]]:
        if self._token is None:
            return []
        return [(b"authorization", f"Bearer {self._token}".encode())]

    def _socket_url(self) -> str:
        if self._token is None or not self.config.token_in_query:
            return self.url
        parts = urllib.parse.urlsplit(self.url)
        query = [*urllib.parse.parse_qsl(parts.query), ("token", self._token)]
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    async def _connect(self, nursery: trio.Nursery) -> WebSocketConnection:
        """Open the socket and read the greeting, within connect_timeout.

        Raises:
            DaemonUnavailable: nothing answered; HandshakeRefused: the daemon said no (its
                words); NotADaemon: something else answered.
        """
        upgraded = False
        try:
            with trio.fail_after(self.config.connect_timeout):
                ws = await connect_websocket_url(
                    nursery,
                    self._socket_url(),
                    extra_headers=self._headers(),
                    max_message_size=self.config.max_message_bytes,
                )
                upgraded = True
                frame = await ws.get_message()
            messages = parse_frame(frame)
        except trio.TooSlowError:
            if upgraded:
                raise NotADaemon(self.url, "a WebSocket server that sends no greeting") from None
            raise DaemonUnavailable(self.url, "timed out connecting") from None
        except ConnectionRejected as exc:
            raise _refusal(self.url, exc) from None
        except ConnectionClosed as exc:
            raise NotADaemon(self.url, f"closed before any greeting ({exc.reason})") from None
        except ProtocolViolation as exc:
            raise NotADaemon(self.url, f"not JSON-RPC: {exc}") from None
        except HandshakeError as exc:
            raise NotADaemon(self.url, f"not a WebSocket server: {_reason(exc)}") from None
        except OSError as exc:
            raise DaemonUnavailable(self.url, _reason(exc)) from None
        for message in messages:
            if isinstance(message, Failure) and message.id is None:
                # The daemon refuses the session before greeting (its connection limit).
                raise HandshakeRefused(self.url, None, message.error.message, message.error)
            await self._dispatch(message)
        if self._greeting is None:
            raise NotADaemon(self.url, "no `connected` greeting")
        return ws

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the connection (reconnecting while durable runs need it); read it.

        Raises:
            DaemonUnavailable: the first connection could not be made (before `started`).
        """
        failures = 0
        first = True
        while True:
            failure = await self._serve_socket(task_status if first else None)
            if isinstance(failure, DaemonUnavailable):
                if first:
                    raise failure
                failures += 1
            elif failure is not None:  # the daemon broke the protocol: do not retry
                log.error("the daemon at %s broke the protocol: %s", self.url, failure)
                self._finish(ConnectionLost(str(failure)))
                return
            else:
                first, failures = False, 0
            self._fail_pending(ConnectionLost(f"the connection to {self.url} was lost"))
            if self._closing or not any(s.durable and s.live for s in self._streams.values()):
                break
            if failures > self.config.reconnect_attempts:
                break
            delay = self.config.reconnect_delay * 2 ** max(failures - 1, 0)
            await trio.sleep(min(delay, self.config.reconnect_delay_max))
        self._finish(ConnectionLost(f"the connection to {self.url} was lost"))

    async def _serve_socket(self, task_status: trio.TaskStatus[None] | None) -> ClientError | None:
        """One socket from connect to close; returns why it could not go on, if not a close.

        Nothing is raised through the nursery (trio would wrap it in an ExceptionGroup).
        """
        try:
            return await self._socket(task_status)
        except BaseExceptionGroup as group:
            # trio-websocket raises a refused upgrade in its reader task, our nursery's child.
            rejected, _rest = group.split(ConnectionRejected)
            if rejected is None:
                raise
            first = _sole_exception(rejected)
            assert isinstance(first, ConnectionRejected)
            return _refusal(self.url, first)

    async def _socket(self, task_status: trio.TaskStatus[None] | None) -> ClientError | None:
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
        self._fail_pending(error)
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


def check_url(url: str) -> None:
    """Raise `InvalidUrl` unless `url` can name a daemon: ``ws://`` or ``wss://``, a host."""
    if not url:
        raise InvalidUrl(url, "it is empty")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise InvalidUrl(url, "it must start with ws:// (or wss://)")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise InvalidUrl(url, "its port is not a number") from None
    if not parts.hostname:
        raise InvalidUrl(url, "it names no host")


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
        sole = _sole_exception(group)
        if sole is None:
            raise
        raise sole from None


# Content types of the daemon's own refusals; anything else (HTML, ...) is another server's.
DAEMON_REFUSAL_TYPE = "text/plain"


def _refusal(url: str, exc: ConnectionRejected) -> DaemonUnavailable:
    """A refused upgrade: the daemon's (one line of plain text) or another server's page."""
    headers = {name.lower(): value for name, value in exc.headers or ()}
    content_type = headers.get(b"content-type", b"").decode("latin-1")
    text = (exc.body or b"").decode("utf-8", "replace").strip()
    if content_type.startswith(DAEMON_REFUSAL_TYPE) and text and "\n" not in text:
        return HandshakeRefused(url, exc.status_code, text)
    what = f"it answered HTTP {exc.status_code}" + (f" ({content_type})" if content_type else "")
    return NotADaemon(url, what)


def _reason(exc: BaseException) -> str:
    """The most telling words for a failed connect: the OS's ("Connection refused")."""
    seen: list[BaseException] = [exc]
    while seen:
        current = seen.pop(0)
        if isinstance(current, OSError) and current.errno:
            return os.strerror(current.errno).lower()
        if isinstance(current, BaseExceptionGroup):
            seen.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                seen.append(linked)
    return str(exc) or type(exc).__name__


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only exception in a (nested) group, ignoring Cancelled when another is there."""
    leaves: list[BaseException] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                collect(inner)
        else:
            leaves.append(exc)

    collect(group)
    real = [exc for exc in leaves if not isinstance(exc, trio.Cancelled)] or leaves[:1]
    return real[0] if len(real) == 1 else None
