"""A run is its identity's, not its connection's: `list` shows it on every connection of the
identity (marked `here` on its own), and any of them can control it; other identities see
nothing."""

from __future__ import annotations

import time

import pytest
import trio
from ccx_testing import make_config, start_daemon

from cc_executor.executor.client import Output, Paused, Resumed, RunNotFoundError, open_connection
from cc_executor.executor.transport.frontdoor import Identity

TIMEOUT = 20
ALICE = "alice-token-0123456789"
BOB = "bob-token-012345678901"
TOKENS = {ALICE: Identity("alice"), BOB: Identity("bob")}


async def test_a_run_is_listed_and_controlled_from_another_connection(
    nursery: trio.Nursery,
) -> None:
    served = await start_daemon(nursery, make_config(tokens=TOKENS))
    before = time.time()
    with trio.fail_after(TIMEOUT):
        async with (
            open_connection(served.url, token=ALICE) as owner,
            open_connection(served.url, token=ALICE) as other,
            open_connection(served.url, token=BOB) as stranger,
        ):
            run = await owner.execute(["sh", "-c", "echo up; exec sleep 30"])
            events = []
            async for event in run:
                events.append(event)
                if isinstance(event, Output):
                    break
            mine = {status.run: status for status in await owner.list()}
            seen = {status.run: status for status in await other.list()}
            assert mine[run.id].here is True
            assert seen[run.id].here is False
            started = seen[run.id].started
            assert started is not None
            assert before <= started <= time.time()
            assert await stranger.list() == []
            await other.call("control", {"run": run.id, "type": "PAUSE"})
            assert (await other.run_status(run.id)).state == "paused"
            await other.call("control", {"run": run.id, "type": "RESUME"})
            with pytest.raises(RunNotFoundError):
                await stranger.call("control", {"run": run.id, "type": "CANCEL"})
            await other.call("signal", {"run": run.id, "signal": "SIGTERM"})
            events += [event async for event in run]
    kinds = [type(event) for event in events[1:-1]]
    assert kinds == [Paused, Resumed]
    assert run.completed is not None
    assert run.completed.signal == "SIGTERM"
