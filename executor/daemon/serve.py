"""Serving: the daemon's nursery, its listeners and the connection boundary; serve until
signalled.

``serve`` binds first (so a port in use fails at once, with one clear line: ``CannotListen``),
makes the daemon a child subreaper (orphans of runs are reparented to us,
never to init, so they can be found and reaped), opens the daemon's nursery with the reaper and
the journal retention, accepts TCP connections, says where it listens (``daemon.listening``,
the first line: plain ``ws://`` URLs), then reads the state directory's durable runs while it
serves (every lookup of a run waits for that).  Each TCP connection (transport/listener.py) is
served end to end by the connection boundary (transport/connection.py), which never lets an
error reach the listener.
``serve_until_signalled`` is ``ccx serve``: the first SIGTERM or SIGINT drains
(``Daemon.shutdown``), a second one hurries the drain.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
from collections.abc import Iterator, Sequence
from functools import partial

import attrs
import structlog
import trio

from cc_executor.executor.config.server import ServerConfig
from cc_executor.executor.daemon import marking
from cc_executor.executor.daemon.daemon import Daemon
from cc_executor.executor.daemon.record import (
    BATCH,
    RECHECK,
    DaemonRecord,
    Ended,
    Exhausted,
    candidates,
    sweep,
)
from cc_executor.executor.daemon.warm import warm_request_path
from cc_executor.executor.mcp.session import McpSession
from cc_executor.executor.rpc.session import Session
from cc_executor.executor.transport.connection import ConnectionBoundary
from cc_executor.executor.transport.frontdoor import Gate
from cc_executor.executor.transport.listener import open_listeners, serve_listeners
from cc_executor.executor.transport.websocket import WebSocketSettings
from cc_executor.supervision import enable_subreaper, run_reaper
from cc_executor.supervision.procfs import ProcfsExhausted
from cc_executor.supervision.signals import SignalReceiver
from cc_executor.supervision.threads import in_thread

log = structlog.get_logger()


@attrs.frozen
class Listening:
    """Where the daemon listens (``port`` is the first listener's, useful with port 0)."""

    port: int
    listeners: tuple[trio.SocketListener, ...]


def boundary_for(daemon: Daemon) -> ConnectionBoundary[Session | McpSession]:
    """The connection boundary, configured from the daemon's settings."""
    config = daemon.config
    return ConnectionBoundary(
        gate=Gate(
            paths=config.paths,
            tokens=config.tokens,
            allowed_origins=frozenset(config.allowed_origins),
        ),
        probe=daemon.probe,
        open_session=daemon.open_session,
        sessions=daemon.sessions,
        max_connections=config.max_connections,
        subprotocols=daemon.subprotocols,
        head_timeout=config.connect_timeout,
        settings=WebSocketSettings(
            max_message_bytes=config.max_message_bytes,
            receive_buffer_bytes=config.receive_buffer_bytes,
            inbound_queue_bytes=config.transport.inbound_queue_bytes,
            close_timeout=config.transport.close_timeout,
            ping_interval=config.transport.ping_interval,
            ping_timeout=config.transport.ping_timeout,
            assembly=daemon.assembly,
        ),
        metrics=daemon.metrics,
    )


def urls(listeners: Sequence[trio.SocketListener], paths: Sequence[str]) -> list[str]:
    """``ws://host:port/path`` for every listener and endpoint path, as plain strings."""
    found = []
    for listener in listeners:
        host, port, *_ = listener.socket.getsockname()
        host = f"[{host}]" if ":" in host else host
        found += [f"ws://{host}:{port}{path}" for path in paths]
    return found


def log_listening(
    config: ServerConfig,
    listeners: Sequence[trio.SocketListener],
    subreaper: bool,
    policy: dict[str, object],
) -> None:
    """``daemon.listening``: where, in plain words and plain strings, and with what policy."""
    endpoints = urls(listeners, config.paths)
    where = f"listening on {endpoints[0]}"
    if len(endpoints) > 1:
        where += f" (and {', '.join(endpoints[1:])})"
    log.info(
        "daemon.listening",
        message=where,
        urls=endpoints,
        host=config.host,
        ports=[listener.socket.getsockname()[1] for listener in listeners],
        pid=os.getpid(),
        subreaper=subreaper,
        auth="tokens" if config.tokens else "none",
        identities=sorted({i.name for i in config.tokens.values()}) if config.tokens else [],
        policy=policy,
    )


async def serve(
    config: ServerConfig,
    *,
    listeners: Sequence[trio.SocketListener] | None = None,
    signals: SignalReceiver = trio.open_signal_receiver,
    task_status: trio.TaskStatus[tuple[Daemon, Listening]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``nursery.start(serve, config)`` returns (daemon, listening).

    `signals` receives the reaper's SIGCHLD: trio's receiver on the main thread, the forwarded
    signals of executor/daemon/loop.py on any other.

    Raises:
        CannotListen: when `listeners` are not given and the port cannot be listened on.
    """
    if listeners is None:
        listeners = await open_listeners(config.host, config.port)
    record = DaemonRecord.claim(config.state_dir, marking.own_id())
    try:
        await _serve(config, listeners, record, signals, task_status)
    finally:
        _release(record, config)


async def _serve(
    config: ServerConfig,
    listeners: Sequence[trio.SocketListener],
    record: DaemonRecord,
    signals: SignalReceiver,
    task_status: trio.TaskStatus[tuple[Daemon, Listening]],
) -> None:
    daemon = Daemon(config, daemon_id=record.daemon_id)
    unwarmed = warm_request_path()
    subreaper = enable_subreaper()
    async with trio.open_nursery() as nursery:
        daemon._nursery = nursery
        await nursery.start(partial(run_reaper, daemon.registry, signals=signals))
        retention = partial(
            daemon.durable.run_retention, internal_error=daemon.metrics.internal_error
        )
        await nursery.start(retention)
        nursery.start_soon(daemon.durable.warm)
        await nursery.start(
            partial(
                serve_listeners,
                boundary_for(daemon).serve,
                listeners,
                retry_delay=config.transport.accept_retry_delay,
                metrics=daemon.metrics,
            )
        )
        log_listening(config, listeners, subreaper, daemon.policy.summary())  # the first line
        if record.error is not None:
            _record_failed(record.error)
        if unwarmed is not None:
            log.warning("daemon.warm_failed", error=unwarmed, then="loaded by the first request")
        if inherited := marking.inherited():
            log.warning(
                "daemon.marker_inherited",
                names=inherited,
                error=marking.failure,
                consequence="this daemon is taken for a process of that run: once its daemon "
                "died, the next one on its state directory kills this one",
            )
        # The state directory is read while the daemon serves: new runs need none of it, and
        # every lookup of a run waits for it (DurableRuns.loaded).
        daemon.start_owned("durable.recover", _recover, daemon)
        daemon.start_owned("daemon.record", _keep_record, record)
        port = listeners[0].socket.getsockname()[1]
        task_status.started((daemon, Listening(port, tuple(listeners))))
        await trio.sleep_forever()


async def _recover(daemon: Daemon) -> None:
    with _collector_paused():
        await daemon.durable.recover()
    await _end_dead_daemons(daemon)


async def _end_dead_daemons(daemon: Daemon) -> None:
    """Kill the runs of daemons that died on this state directory (record.py), `BATCH`
    records to a scan of /proc; once the daemon stops (drains, or is cancelled) the sweep ends
    after the batch at hand, the records not looked at left for the next start."""
    config = daemon.config
    own = daemon.registry.daemon_id
    assert own is not None
    try:
        ids = await in_thread(candidates, config.state_dir, own, config.supervision)
    except Exhausted as exc:
        log.error("daemon.leftovers_unchecked", error=str(exc), then=KEPT)
        return
    except OSError as exc:
        log.error("daemon.records_unreadable", error=str(exc))
        return
    dead = scans = looked = 0
    try:
        while looked < len(ids):
            if daemon.draining:  # stopping: the rest is the next start's
                _log_left(len(ids) - looked)
                return
            batch = ids[looked : looked + BATCH]
            swept = await in_thread(sweep, config.state_dir, batch, config.supervision)
            scans += swept.scans
            if swept.exhausted is not None:
                _log_ended(swept.ended)
                log.error(
                    "daemon.leftovers_unchecked",
                    error=swept.exhausted,
                    records_left=len(ids) - looked,
                    then=KEPT,
                )
                return
            looked += len(batch)
            dead += len(swept.ended)
            _log_ended(swept.ended)
            if len(ids) > BATCH:
                log.info(
                    "daemon.records_swept",
                    dead=len(swept.ended),
                    scans=swept.scans,
                    left=len(ids) - looked,
                )
    except trio.Cancelled:
        _log_left(len(ids) - looked)
        raise
    log.info("daemon.records_checked", dead=dead, scans=scans)


KEPT = "the records stay for a later start"


def _log_left(left: int) -> None:
    log.warning(
        "daemon.records_left",
        left=left,
        why="the daemon is stopping",
        then="the next start ends their runs",
    )


def _log_ended(ended: list[Ended]) -> None:
    removed = []
    for each in ended:
        if each.error is not None:
            log.error("daemon.leftovers_unchecked", daemon_id=each.daemon_id, error=each.error)
        elif each.killed:
            log.warning("daemon.leftovers_killed", daemon_id=each.daemon_id, killed=each.killed)
        else:
            removed.append(each.daemon_id)
    if removed:
        log.info("daemon.records_removed", daemon_ids=removed)


async def _keep_record(record: DaemonRecord) -> None:
    """While the daemon serves, its record stays at its name (record.py `renew`)."""
    while True:
        await trio.sleep(RECHECK)
        failed = record.error
        if await in_thread(record.renew):
            log.warning("daemon.record_restored", path=record.path, error_before=failed)
        elif record.error is not None and record.error != failed:
            _record_failed(record.error)


def _record_failed(error: str) -> None:
    log.warning(
        "daemon.record_failed",
        error=error,
        consequence="if this daemon is killed, the next start cannot end its runs",
    )


def _release(record: DaemonRecord, config: ServerConfig) -> None:
    """At exit, every run ended: nothing may carry the daemon's id any more (record.py)."""
    try:
        killed = record.release(config.supervision)
    except ProcfsExhausted as exc:
        log.error("daemon.leftovers_unchecked", daemon_id=record.daemon_id, error=str(exc))
        return
    if killed:
        log.warning("daemon.leftovers_killed", daemon_id=record.daemon_id, killed=killed)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while journals are read at start: ten thousand of them are
    objects that all stay, and the collector's passes over them cost a third of reading them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


FULL_COLLECTION_EVERY = 100  # middle passes between full ones (Python's default: 10)


def _rare_full_collections() -> None:
    """A full pass of the cyclic collector one tenth as often as Python's default.

    A finished run and its connection leave no cycles (tests/executor/test_no_cyclic_garbage.py),
    so a full pass finds nothing of them; what it does is walk every live run's objects, 0.1-0.15
    s with a thousand runs live, four or five times in a burst of a thousand.  The young and
    middle generations keep their thresholds: their passes are short, and a control's reply may
    wait for one.
    """
    young, middle, _old = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


async def serve_until_signalled(
    config: ServerConfig, *, signals: SignalReceiver = trio.open_signal_receiver
) -> None:
    """``ccx serve``: serve until SIGTERM or SIGINT, then shut down gracefully and return.

    `signals`: as for ``serve`` (these two and SIGCHLD).

    Raises:
        CannotListen: before anything else happens, when the port cannot be listened on.
    """
    listeners = await open_listeners(config.host, config.port)
    with signals(signal.SIGTERM, signal.SIGINT) as received:
        async with trio.open_nursery() as nursery:
            daemon, _listening = await nursery.start(
                partial(serve, config, listeners=listeners, signals=signals)
            )

            async def freeze_when_recovered() -> None:
                # What start made stays for the daemon's life (modules, the request path, the
                # runs read from the state directory): out of the collector's way from then on,
                # so its full passes do not walk it again and again while runs are served.
                await daemon.durable.loaded()
                gc.freeze()
                _rare_full_collections()

            nursery.start_soon(freeze_when_recovered)
            async for signum in received:
                log.info("daemon.signal", signal=signal.Signals(signum).name)
                break

            async def hurry_on_second_signal() -> None:
                async for signum in received:
                    log.info("daemon.signal", signal=signal.Signals(signum).name, hurry=True)
                    daemon.hurry()

            nursery.start_soon(hurry_on_second_signal)
            await daemon.shutdown()
            nursery.cancel_scope.cancel()
    log.info("daemon.stopped")
