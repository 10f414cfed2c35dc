"""Serving: the daemon's nursery, its listeners and the front door; serve until signalled.

``serve`` opens the daemon's nursery, makes the daemon a child subreaper (orphans of runs are
reparented to us, never to init, so they can be found and reaped), starts the reaper and the
journal retention, recovers durable runs, and serves TCP connections through the front door
(transport/frontdoor.py).  ``serve_until_signalled`` is ``ccx serve``: the first SIGTERM or
SIGINT drains (``Daemon.shutdown``), a second one hurries the drain.
"""

from __future__ import annotations

import os
import signal

import attrs
import structlog
import trio

from cc_executor.executor.config.server import ServerConfig
from cc_executor.executor.daemon.daemon import Daemon
from cc_executor.executor.transport.frontdoor import FrontDoor, Gate
from cc_executor.protocol.mcp import SUBPROTOCOL
from cc_executor.supervision import enable_subreaper, run_reaper

log = structlog.get_logger()


@attrs.frozen
class Listening:
    """Where the daemon listens (``port`` is the first listener's, useful with port 0)."""

    port: int
    listeners: tuple[trio.SocketListener, ...]


async def serve(
    config: ServerConfig,
    *,
    task_status: trio.TaskStatus[tuple[Daemon, Listening]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``nursery.start(serve, config)`` returns (daemon, listening)."""
    daemon = Daemon(config)
    subreaper = enable_subreaper()
    await daemon.durable.recover()
    door = FrontDoor(
        gate=Gate(
            paths=config.paths,
            tokens=config.tokens,
            allowed_origins=frozenset(config.allowed_origins),
        ),
        probe=daemon.probe,
        on_upgrade=daemon.handle,
        head_timeout=config.connect_timeout,
        close_timeout=config.connect_timeout,
        max_message_bytes=config.max_message_bytes,
        receive_buffer_bytes=config.receive_buffer_bytes,
        on_refusal=daemon.metrics.refused,
        subprotocols=(SUBPROTOCOL,),
    )
    async with trio.open_nursery() as nursery:
        daemon._nursery = nursery
        await nursery.start(run_reaper, daemon.registry)
        await nursery.start(daemon.durable.run_retention)
        listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        await nursery.start(trio.serve_listeners, door.serve, listeners)
        ports = [listener.socket.getsockname()[1] for listener in listeners]
        log.info(
            "daemon.listening",
            host=config.host,
            ports=ports,
            pid=os.getpid(),
            subreaper=subreaper,
            auth="tokens" if config.tokens else "none",
            identities=sorted({i.name for i in config.tokens.values()}) if config.tokens else [],
            policy=daemon.policy.summary(),
        )
        task_status.started((daemon, Listening(ports[0], tuple(listeners))))
        await trio.sleep_forever()


async def serve_until_signalled(config: ServerConfig) -> None:
    """``ccx serve``: serve until SIGTERM or SIGINT, then shut down gracefully and return."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            daemon, _listening = await nursery.start(serve, config)
            async for signum in signals:
                log.info("daemon.signal", signal=signal.Signals(signum).name)
                break

            async def hurry_on_second_signal() -> None:
                async for signum in signals:
                    log.info("daemon.signal", signal=signal.Signals(signum).name, hurry=True)
                    daemon.hurry()

            nursery.start_soon(hurry_on_second_signal)
            await daemon.shutdown()
            nursery.cancel_scope.cancel()
    log.info("daemon.stopped")
