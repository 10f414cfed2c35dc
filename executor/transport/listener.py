"""Accepting TCP connections: a listener that never dies.

``trio.serve_listeners`` re-raises every accept error but four, and dies with any handler that
raises; either ends the daemon.  Here each accepted stream goes to a handler that never raises
(the connection boundary, connection.py; should a bug in its cleanup raise anyway, it is logged
as ``connection.handler_failed`` and counted as ``ccx_internal_errors_total{where="listener"}``,
and the listener goes on), and accept errors have an owner:

- out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): stop accepting for
  ``retry_delay`` and retry, as trio does.  The connection waits in the kernel's backlog
  meanwhile; descriptors freed by connections and runs that end let it in;
- any other OSError: logged and retried the same way; a listener that cannot accept never
  takes the daemon and its runs down with it.

A pause is logged once when it starts (``accept.paused``, with the errno) and once when an
accept succeeds again (``accept.resumed``, with how many attempts failed), never per retry;
every failed attempt counts in ``ccx_accept_errors_total{errno}``.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog
import trio

log = structlog.get_logger()

CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class AcceptMetrics(Protocol):
    def accept_failed(self, errno_name: str) -> None: ...

    def internal_error(self, where: str) -> None: ...


Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def serve_listeners(
    handler: Handler,
    listeners: Sequence[trio.SocketListener],
    *,
    retry_delay: float,
    metrics: AcceptMetrics,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept on every listener until cancelled; each connection runs ``handler(stream)``
    in this function's nursery."""
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, handler, nursery, retry_delay, metrics)
        task_status.started()


async def _accept_loop(
    listener: trio.SocketListener,
    handler: Handler,
    nursery: trio.Nursery,
    retry_delay: float,
    metrics: AcceptMetrics,
) -> None:
    address = _address(listener)
    failed = 0
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except trio.ClosedResourceError:
                return  # closed under us: this listener is done, the others go on
            except OSError as exc:
                name = errno.errorcode.get(exc.errno or 0, "unknown")
                metrics.accept_failed(name)
                if failed == 0:
                    log.error(
                        "accept.paused",
                        listener=address,
                        errno=name,
                        error=os.strerror(exc.errno) if exc.errno else str(exc),
                        capacity=exc.errno in CAPACITY_ERRNOS,
                        retry_every=retry_delay,
                    )
                failed += 1
                await trio.sleep(retry_delay)
                continue
            if failed:
                log.warning("accept.resumed", listener=address, failed_attempts=failed)
                failed = 0
            nursery.start_soon(_run_handler, handler, stream, metrics)


async def _run_handler(handler: Handler, stream: trio.SocketStream, metrics: AcceptMetrics) -> None:
    """The last line of defence: the handler (the connection boundary) owns its errors, but a
    bug in its own cleanup must not end the listener either."""
    try:
        await handler(stream)
    except Exception:
        log.exception("connection.handler_failed")
        metrics.internal_error("listener")
    finally:
        if stream.socket.fileno() != -1:  # the handler's own cleanup closes it as a rule
            await trio.aclose_forcefully(stream)


def _address(listener: trio.SocketListener) -> str:
    host, port, *_ = listener.socket.getsockname()
    return f"{host}:{port}"


class CannotListen(Exception):
    """The listening socket could not be opened; ``str()`` is the one line an operator sees.

    ``kind`` says which: "in_use" (EADDRINUSE), "address" (an unknown host, or an address
    that is not this machine's), "permission" (a privileged port), or "other".
    """

    def __init__(self, host: str, port: int, reason: str, kind: str) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.kind = kind


_LISTEN_ERRORS = {
    errno.EADDRINUSE: "in_use",
    errno.EADDRNOTAVAIL: "address",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
}


async def open_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Listen on `host`:`port` (every address the host resolves to).

    Raises:
        CannotListen: with the reason in plain words.
    """
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except socket.gaierror as exc:
        raise CannotListen(host, port, plain_error(exc), "address") from None
    except OSError as exc:
        kind = _LISTEN_ERRORS.get(exc.errno or 0, "other")
        raise CannotListen(host, port, plain_error(exc), kind) from None


def plain_error(exc: OSError) -> str:
    """``address already in use`` rather than ``[Errno 98] Address already in use``."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]
