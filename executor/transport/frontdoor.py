"""The front door's HTTP: request heads, the gate an upgrade passes, probe answers.

Each TCP connection starts with an HTTP request head, which we read ourselves (bounded in size
and time; connection.py owns the I/O).  Then

- plain ``GET`` requests for the probe paths (``/healthz``, ``/readyz``, ``/metrics``) are
  answered with a small HTTP/1.1 response and the connection is closed; ``/metrics`` needs a
  token when tokens are configured (``Gate.authorize_probe``), the other two stay open;
- WebSocket upgrades are checked — path, then token, then Origin (``Gate.authenticate``) —
  before any session exists; a refusal is an HTTP 401/403/404 with a log line that names the
  rule (and the identity or address, never the token).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

import attrs
import trio

from cc_executor.executor.transport import sockio

MAX_HEAD_BYTES = 16 * 1024

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    426: "Upgrade Required",
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
    target: str  # the request target as sent: the path and the query

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
    try:
        url = urlsplit(target)  # ValueError: a malformed authority ("//[", "http://[::1")
        query = parse_qs(url.query)
    except ValueError as exc:
        raise BadRequest(f"malformed request target {target[:80]!r}: {exc}") from None
    return RequestHead(method, url.path or "/", query, headers, target)


async def read_head(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    """Read up to the blank line; return (head, bytes read beyond it)."""
    buffer = bytearray()
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            return bytes(buffer[:end]), bytes(buffer[end + 4 :])
        if len(buffer) > MAX_HEAD_BYTES:
            raise BadRequest("request head too large")
        data = await sockio.receive_some(stream, 4096)
        if not data:
            raise BadRequest("connection closed before the request head ended")
        buffer += data


def http_response(
    status: int,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    headers: Mapping[str, str] | None = None,
    *,
    head_only: bool = False,
) -> bytes:
    """A complete HTTP/1.1 response that closes the connection; `head_only` (the answer to a
    HEAD request) without the body, its Content-Length still the body's (RFC 9110 9.3.2)."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + (b"" if head_only else body)


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


def peer_address(stream: trio.SocketStream) -> str:
    """``host:port`` of the other end of a TCP stream.

    Raises:
        OSError: ENOTCONN when the peer has already reset the connection.
    """
    host, port, *_ = stream.socket.getpeername()
    return f"{host}:{port}"


@attrs.frozen
class Refusal:
    """Why an upgrade is refused: the HTTP status and the rule, for the log and the body."""

    status: int
    rule: str
    message: str

    def response(self) -> bytes:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return http_response(self.status, f"{self.message}\n".encode(), headers=headers)


@attrs.frozen
class Gate:
    """The checks an upgrade passes before a session exists."""

    paths: tuple[str, ...]
    tokens: Mapping[str, Identity] | None = None  # None: no authentication (loopback default)
    allowed_origins: frozenset[str] = frozenset()
    # Probes that show daemon-wide state: they need a token when tokens are configured.
    protected_probes: frozenset[str] = frozenset({"/metrics"})

    def authorize_probe(self, head: RequestHead) -> Refusal | None:
        """Why a probe is refused (a protected one without a valid token), or None."""
        if self.tokens is None or head.path not in self.protected_probes:
            return None
        if self._token_identity(head) is None:
            return Refusal(401, "token", f"{head.path} needs a token (Authorization: Bearer)")
        return None

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
