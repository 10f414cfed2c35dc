"""Opening a socket to a daemon, and telling who answered when it is not one.

`open_socket` connects, upgrades and reads the first frame within `connect_timeout`, and turns
every way that can fail into one of the client's errors: `DaemonUnavailable` (nothing
answered), `HandshakeRefused` (the daemon said no, in its words) or `NotADaemon` (something
else answered). `check_url` refuses a URL that cannot name a daemon before anything is sent.
"""

from __future__ import annotations

import os
import socket
import ssl
import urllib.parse

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from cc_executor.executor.client.config import ClientConfig
from cc_executor.executor.client.errors import (
    LOOKUP_FAILED,
    NOT_ANSWERING,
    TIMED_OUT,
    DaemonUnavailable,
    HandshakeRefused,
    InvalidUrl,
    NotADaemon,
    ProtocolViolation,
)
from cc_executor.executor.client.inbound import Failure, Inbound, parse_frame
from cc_executor.protocol.binary import BINARY_SUBPROTOCOL

# Content types of the daemon's own refusals; anything else (HTML, ...) is another server's.
DAEMON_REFUSAL_TYPE = "text/plain"


def check_url(url: str) -> None:
    """Raise `InvalidUrl` unless `url` can name a daemon: ``ws://`` or ``wss://``, a host that
    can be looked up (a bracketed IPv6 address, or a name each of whose labels is 1-63
    characters: the resolver's own check, which would otherwise fail later, as a traceback)."""
    if not url:
        raise InvalidUrl(url, "it is empty")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # an unclosed "[", a bracketed host that is no IPv6 address
        raise InvalidUrl(url, "its host is not a name or an address ([...] holds IPv6)") from None
    if parts.scheme not in ("ws", "wss"):
        raise InvalidUrl(url, "it must start with ws:// (or wss://)")
    try:
        port = parts.port
    except ValueError:  # not digits, or beyond 65535
        raise InvalidUrl(url, "its port is not a number from 1 to 65535") from None
    if port == 0:  # nothing listens on port 0: connecting would only be refused
        raise InvalidUrl(url, "its port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise InvalidUrl(url, "it names no host")
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        raise InvalidUrl(url, "its host is not a valid name (an empty or too long label)") from None


def _with_token(url: str, token: str | None, config: ClientConfig) -> str:
    if token is None or not config.token_in_query:
        return url
    parts = urllib.parse.urlsplit(url)
    query = [*urllib.parse.parse_qsl(parts.query), ("token", token)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


async def _open_stream(url: str) -> tuple[Stream, str, str]:
    """The TCP (or TLS) stream to `url`'s host, the Host header and the resource, as
    trio-websocket's `connect_websocket_url` would make them; opened here so that a timeout
    can tell a host that never took the connection from one that took it and said nothing."""
    parts = urllib.parse.urlsplit(url)
    tls = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if "?" in url else "")
    stream: Stream
    if tls:
        context = ssl.create_default_context()
        stream = await trio.open_ssl_over_tcp_stream(
            host, port, ssl_context=context, https_compatible=True
        )
    else:
        stream = await trio.open_tcp_stream(host, port)
    return stream, host if port in (80, 443) else f"{host}:{port}", resource


async def open_socket(
    nursery: trio.Nursery, url: str, token: str | None, config: ClientConfig
) -> tuple[WebSocketConnection, list[Inbound]]:
    """The upgraded socket (its reader in `nursery`) and its first frame's messages.

    With `config.binary_output` the socket offers binary output frames; `binary_output(ws)`
    says whether the daemon took them.

    Raises:
        DaemonUnavailable, HandshakeRefused, NotADaemon: see the module docstring.
    """
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    stream: Stream | None = None
    upgraded = False
    try:
        with trio.fail_after(config.connect_timeout):
            stream, host, resource = await _open_stream(_with_token(url, token, config))
            ws = await wrap_client_stream(
                nursery,
                stream,
                host,
                resource,
                extra_headers=headers,
                subprotocols=[BINARY_SUBPROTOCOL] if config.binary_output else None,
                max_message_size=config.max_message_bytes,
            )
            upgraded = True
            frame = await ws.get_message()
        messages = parse_frame(frame, binary=binary_output(ws))
    except trio.TooSlowError:
        if upgraded:
            raise NotADaemon(url, "a WebSocket server that sends no greeting") from None
        if stream is not None:
            await trio.aclose_forcefully(stream)
            seconds = f"{config.connect_timeout:g} s"
            raise DaemonUnavailable(url, f"{NOT_ANSWERING} within {seconds}") from None
        raise DaemonUnavailable(url, TIMED_OUT) from None
    except ConnectionRejected as exc:
        raise refusal(url, exc) from None
    except ConnectionClosed as exc:
        raise NotADaemon(url, f"closed before any greeting ({exc.reason})") from None
    except ProtocolViolation as exc:
        raise NotADaemon(url, f"not JSON-RPC: {exc}") from None
    except HandshakeError as exc:
        raise NotADaemon(url, f"not a WebSocket server: {reason(exc)}") from None
    except OSError as exc:
        raise DaemonUnavailable(url, reason(exc)) from None
    for message in messages:
        if isinstance(message, Failure) and message.id is None:
            # The daemon refuses the session before its greeting (its connection limit).
            raise HandshakeRefused(url, None, message.error.message, message.error)
    return ws, messages


def binary_output(ws: WebSocketConnection) -> bool:
    """True when the daemon agreed to send output as binary frames on `ws`."""
    return ws.subprotocol == BINARY_SUBPROTOCOL


def refusal(url: str, exc: ConnectionRejected) -> DaemonUnavailable:
    """A refused upgrade: the daemon's (one line of plain text) or another server's page."""
    headers = {name.lower(): value for name, value in exc.headers or ()}
    content_type = headers.get(b"content-type", b"").decode("latin-1")
    text = (exc.body or b"").decode("utf-8", "replace").strip()
    if content_type.startswith(DAEMON_REFUSAL_TYPE) and text and "\n" not in text:
        return HandshakeRefused(url, exc.status_code, text)
    what = f"it answered HTTP {exc.status_code}" + (f" ({content_type})" if content_type else "")
    return NotADaemon(url, what)


def refusal_in(url: str, group: BaseExceptionGroup[BaseException]) -> DaemonUnavailable | None:
    """A refused upgrade that trio-websocket raised in its reader task (a nursery's child)."""
    rejected, _rest = group.split(ConnectionRejected)
    first = None if rejected is None else sole_exception(rejected)
    return refusal(url, first) if isinstance(first, ConnectionRejected) else None


def reason(exc: BaseException) -> str:
    """The most telling words for a failed connect: the OS's ("Connection refused")."""
    seen: list[BaseException] = [exc]
    while seen:
        current = seen.pop(0)
        if isinstance(current, socket.gaierror):  # its errno is the resolver's, not errno's
            return f"{LOOKUP_FAILED}: {current.strerror or current.errno}".lower()
        if isinstance(current, OSError) and current.errno:
            return os.strerror(current.errno).lower()
        if isinstance(current, BaseExceptionGroup):
            seen.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                seen.append(linked)
    return str(exc) or type(exc).__name__


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
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
