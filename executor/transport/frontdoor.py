"""The front door: one TCP port for HTTP probes and the WebSocket endpoint.

Theory of operation
-------------------
trio-websocket answers only WebSocket upgrades, and a refused upgrade would already have cost
a handshake.  So each TCP connection starts here: we read the HTTP request head ourselves
(bounded in size and time), then

- plain ``GET`` requests for the probe paths (``/healthz``, ``/readyz``, ``/metrics``) are
  answered with a small HTTP/1.1 response and the connection is closed;
- WebSocket upgrades are checked — path, then token, then Origin — before any session exists;
  a refusal is an HTTP 401/403/404 with a log line that names the rule (and the identity or
  address, never the token);
- an accepted upgrade is handed to trio-websocket's ``wrap_server_stream`` over a stream that
  replays the head we already read; the WebSocket is accepted (with the first subprotocol the
  client offers that we speak) and the caller's handler gets it with the client's identity.
  Whatever the handler does, the connection is closed when it returns.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

import attrs
import structlog
import trio
from trio_websocket import WebSocketConnection, wrap_server_stream

log = structlog.get_logger()

MAX_HEAD_BYTES = 16 * 1024

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class BadRequest(ValueError):
    """The request head is not HTTP/1.1 we can read."""


@attrs.frozen
class RequestHead:
    """The parts of an HTTP request head the front door decides on."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ", "

    @property
    def is_websocket(self) -> bool:
        return (
            self.headers.get("upgrade", "").lower() == "websocket"
            and "upgrade" in self.headers.get("connection", "").lower()
        )


def parse_head(raw: bytes) -> RequestHead:
    """Parse a request head (everything before the blank line)."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        raise BadRequest("undecodable request head") from None
    request_line, *header_lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"not an HTTP/1.x request line: {request_line[:80]!r}")
    method, target, _version = parts
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"malformed header line: {line[:80]!r}")
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    url = urlsplit(target)
    return RequestHead(method, url.path or "/", parse_qs(url.query), headers)


class ReplayStream(trio.abc.Stream):
    """A stream that first returns bytes already read from it, then reads on."""

    def __init__(self, stream: trio.abc.Stream, buffered: bytes) -> None:
        self._stream = stream
        self._buffered = buffered

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._buffered:
            size = len(self._buffered) if max_bytes is None else max_bytes
            data, self._buffered = self._buffered[:size], self._buffered[size:]
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def read_head(stream: trio.abc.Stream) -> tuple[bytes, bytes]:
    """Read up to the blank line; return (head, bytes read beyond it)."""
    buffer = bytearray()
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            return bytes(buffer[:end]), bytes(buffer[end + 4 :])
        if len(buffer) > MAX_HEAD_BYTES:
            raise BadRequest("request head too large")
        data = await stream.receive_some(4096)
        if not data:
            raise BadRequest("connection closed before the request head ended")
        buffer += data


def http_response(
    status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8"
) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


@attrs.frozen
class Identity:
    """Who a client is, as its token says; logs name this, never the token."""

    name: str
    admin: bool = False


@attrs.frozen
class Peer:
    """An accepted client: who it is, and where it connects from."""

    identity: Identity
    address: str


def peer_address(stream: trio.abc.Stream) -> str:
    """``host:port`` of the other end of a TCP stream."""
    if isinstance(stream, trio.SocketStream):
        host, port, *_ = stream.socket.getpeername()
        return f"{host}:{port}"
    return repr(stream)


@attrs.frozen
class Refusal:
    """Why an upgrade is refused: the HTTP status and the rule, for the log and the body."""

    status: int
    rule: str
    message: str


@attrs.frozen
class Gate:
    """The checks an upgrade passes before a session exists."""

    paths: tuple[str, ...]
    tokens: Mapping[str, Identity] | None = None  # None: no authentication (loopback default)
    allowed_origins: frozenset[str] = frozenset()

    def authenticate(self, head: RequestHead) -> Identity | Refusal:
        """The client's identity, or why it is refused (path, then token, then Origin)."""
        if head.path not in self.paths:
            return Refusal(404, "path", f"no WebSocket endpoint at {head.path}")
        identity = Identity("local") if self.tokens is None else self._token_identity(head)
        if identity is None:
            return Refusal(401, "token", "a valid token is required (Authorization: Bearer)")
        origin = head.headers.get("origin")
        if origin is not None and origin not in self.allowed_origins:
            return Refusal(403, "origin", f"origin {origin} is not allowed")
        return identity

    def _token_identity(self, head: RequestHead) -> Identity | None:
        offered = []
        scheme, _, credential = head.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credential:
            offered.append(credential.strip())
        offered.extend(head.query.get("token", []))
        assert self.tokens is not None
        found: Identity | None = None
        for candidate in offered:
            for token, identity in self.tokens.items():
                # Compare with every token, in constant time each, so timing tells nothing.
                if hmac.compare_digest(candidate.encode(), token.encode()):
                    found = identity
        return found


ProbeHandler = Callable[[str], tuple[int, bytes, str] | None]
UpgradeHandler = Callable[[WebSocketConnection, Peer], Awaitable[None]]


@attrs.frozen
class FrontDoor:
    """Serves one TCP connection: a probe, a refused upgrade, or a WebSocket session."""

    gate: Gate
    probe: ProbeHandler
    on_upgrade: UpgradeHandler
    head_timeout: float
    close_timeout: float
    max_message_bytes: int
    receive_buffer_bytes: int
    subprotocols: tuple[str, ...] = ()
    on_refusal: Callable[[str], None] = lambda rule: None

    async def serve(self, stream: trio.abc.Stream) -> None:
        """The handler for ``trio.serve_listeners``: never raises for a bad client."""
        try:
            with trio.fail_after(self.head_timeout):
                raw, rest = await read_head(stream)
            head = parse_head(raw)
        except (BadRequest, trio.TooSlowError, trio.BrokenResourceError) as exc:
            log.info("http.bad_request", error=str(exc))
            await self._reply(stream, http_response(400, b"bad request\n"))
            return
        if not head.is_websocket:
            await self._serve_probe(stream, head)
            return
        verdict = self.gate.authenticate(head)
        if isinstance(verdict, Refusal):
            self.on_refusal(verdict.rule)
            log.warning(
                "upgrade.refused",
                rule=verdict.rule,
                status=verdict.status,
                path=head.path,
                remote=peer_address(stream),
            )
            await self._reply(
                stream, http_response(verdict.status, f"{verdict.message}\n".encode())
            )
            return
        async with trio.open_nursery() as nursery:
            request = None
            with trio.move_on_after(self.head_timeout):
                request = await wrap_server_stream(
                    nursery,
                    ReplayStream(stream, raw + b"\r\n\r\n" + rest),
                    max_message_size=self.max_message_bytes,
                    receive_buffer_size=self.receive_buffer_bytes,
                )
            if request is None:
                # wsproto refused the handshake (and answered it); nothing more to do.
                nursery.cancel_scope.cancel()
                await trio.aclose_forcefully(stream)
                return
            offered = request.proposed_subprotocols
            chosen = next((p for p in offered if p in self.subprotocols), None)
            ws = await request.accept(subprotocol=chosen)
            try:
                await self.on_upgrade(ws, Peer(verdict, peer_address(stream)))
            finally:
                # The connection's reader lives in this nursery: closing ends it.
                with trio.move_on_after(self.close_timeout, shield=True):
                    await ws.aclose()

    async def _serve_probe(self, stream: trio.abc.Stream, head: RequestHead) -> None:
        if head.method not in ("GET", "HEAD"):
            await self._reply(stream, http_response(405, b"only GET\n"))
            return
        answer = self.probe(head.path)
        if answer is None:
            await self._reply(stream, http_response(404, f"nothing at {head.path}\n".encode()))
            return
        status, body, content_type = answer
        await self._reply(
            stream, http_response(status, b"" if head.method == "HEAD" else body, content_type)
        )

    async def _reply(self, stream: trio.abc.Stream, response: bytes) -> None:
        """Send a response and close gently: stop sending, read what the client still sends
        (bounded), then close — closing with unread input would reset the connection and
        could destroy the response before the client reads it."""
        with trio.move_on_after(self.close_timeout):
            try:
                await stream.send_all(response)
                if isinstance(stream, trio.abc.HalfCloseableStream):
                    await stream.send_eof()
                drained = 0
                while drained < MAX_HEAD_BYTES * 8:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    drained += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await trio.aclose_forcefully(stream)
