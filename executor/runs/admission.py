"""Admitting a new run: the capacity checks and the start of its runner.

Every way a run begins — ``execute``, a durable ``execute``, the ``claude`` method, the MCP
tools — goes through these two, so the limits and the runner's start are written once.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import trio

from cc_executor.protocol import LimitExceeded, ShuttingDown
from cc_executor.supervision import (
    Run,
    RunEvent,
    RunRegistry,
    SpawnError,
    SpawnSpec,
    SupervisionConfig,
    run_process,
)

if TYPE_CHECKING:
    from cc_executor.executor.daemon.daemon import Daemon


def check_capacity(daemon: Daemon, live_here: int | None) -> None:
    """Refuse a new run while draining or at a limit.

    Args:
        live_here: live runs of the requesting connection; None for a run that belongs to no
            connection (durable), which only the daemon-wide limit applies to.
    """
    config = daemon.config
    if daemon.draining:
        raise ShuttingDown("the daemon is shutting down and accepts no new runs")
    if live_here is not None and live_here >= config.max_runs_per_connection:
        raise LimitExceeded(
            f"this connection already has {live_here} runs "
            f"(limit max_runs_per_connection={config.max_runs_per_connection})",
            {"limit": "max_runs_per_connection", "value": config.max_runs_per_connection},
        )
    if daemon.live_runs >= config.max_runs:
        raise LimitExceeded(
            f"the daemon already has {daemon.live_runs} runs (limit max_runs={config.max_runs})",
            {"limit": "max_runs", "value": config.max_runs},
        )


async def start_runner(
    nursery: trio.Nursery,
    spec: SpawnSpec,
    supervision: SupervisionConfig,
    registry: RunRegistry,
    *,
    # The run's own limit (ended through the ladder, reported as timed out), not a deadline
    # on this call: see run_process.
    timeout: float | None,  # noqa: ASYNC109
    idle_timeout: float | None = None,
) -> tuple[Run, trio.MemoryReceiveChannel[RunEvent]]:
    """Start supervision's runner in ``nursery``; return the run and its event channel.

    Raises:
        SpawnError: the process could not be started (both ends of the channel are closed).
    """
    send, receive = trio.open_memory_channel[RunEvent](supervision.channel_capacity)
    runner = partial(
        run_process,
        spec,
        supervision,
        send,
        registry,
        timeout=timeout,
        idle_timeout=idle_timeout,
    )
    try:
        run: Run = await nursery.start(runner)
    except SpawnError:
        receive.close()  # the runner has closed its end already
        raise
    return run, receive
