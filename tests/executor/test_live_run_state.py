"""A run's state, as `status` and `list` show it, says "completed" only together with how the
run ended.

Supervision's run is over (its processes reaped, its pipes read to the end) a moment before the
run's keeper records the completion; until then the run is still ending.  Observed before: an
MCP client's `status` right after a cancel, on a loaded box, found state "completed" and no
outcome (test_sdk1_cancel_ends_the_run), and so could a `status` or `list` over JSON-RPC.
"""

from __future__ import annotations

import os
import uuid
from functools import partial

import trio
from ccx_testing import make_config

from cc_executor.executor.runs import wire
from cc_executor.executor.runs.durable import DurableRuns
from cc_executor.executor.runs.live import LiveRun
from cc_executor.executor.transport.frontdoor import Identity
from cc_executor.protocol.server_codec import run_info_object
from cc_executor.supervision import Run, RunState
from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.events import RunEvent
from cc_executor.supervision.registry import RunRegistry
from cc_executor.supervision.runner import run_process
from cc_executor.supervision.spawn import SpawnSpec

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


async def _over(config: SupervisionConfig) -> Run:
    """A run of `true` whose runner has sent its completion and closed its channel."""
    spec = SpawnSpec(("true",), ENV, f"state-{uuid.uuid4().hex[:12]}")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            send, receive = trio.open_memory_channel[RunEvent](config.channel_capacity)
            run: Run = await nursery.start(partial(run_process, spec, config, send, RunRegistry()))
            async with receive:
                async for _event in receive:  # to the completion; then the runner closes it
                    pass
    assert run.state is RunState.COMPLETED
    assert run.outcome is not None
    return run


async def test_a_run_whose_completion_is_not_recorded_yet_is_ending_not_completed() -> None:
    run = await _over(SupervisionConfig(term_grace=1.0, kill_wait=2.0))
    assert run.outcome is not None
    live = LiveRun(run, kind="command", owner=Identity("local"), origin=None, started_wall=0.0)

    info = run_info_object(live.info(trio.current_time()))
    assert live.state == info["state"] == "ending"
    assert "status" not in info
    assert "exit_code" not in info

    live.completion = wire.completion(run.outcome, run.pid, run.pgid)
    info = run_info_object(live.info(trio.current_time()))
    assert live.state == info["state"] == "completed"
    assert (info["status"], info["exit_code"]) == ("completed", 0)


async def test_a_durable_run_whose_completion_is_not_recorded_yet_is_ending() -> None:
    config = make_config()
    run = await _over(config.supervision)
    assert run.outcome is not None
    durable = DurableRuns(config, config.instance).create(run, "local", "command")
    try:
        info = run_info_object(durable.info(trio.current_time()))
        assert info["state"] == "ending"
        assert "status" not in info
        durable.completion = wire.completion(run.outcome, run.pid, run.pgid)
        info = run_info_object(durable.info(trio.current_time()))
        assert info["state"] == "completed"
        assert info["status"] == "completed"
    finally:
        await durable.journal.close()
