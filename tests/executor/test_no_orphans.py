"""No survivor and no zombie, for every tree shape, however the run ends.

Each tree writes the pids of its processes to a file; once they are all there, the run is ended
by CANCEL, by the client vanishing without a close handshake, or by SIGTERM to the daemon, and
every one of those pids must be gone.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio
from ccx_testing import (
    Served,
    WireClient,
    alive,
    open_client,
    pids_in_file,
    run_daemon,
    wait_until,
    zombie_children,
)

# name -> (script with {pids} for the pid file, how many pids it writes)
TREES = {
    "plain": (
        "sleep 300 & echo $! >> {pids}; sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait",
        3,
    ),
    "grandchildren_ignore_sigterm": (
        "sh -c 'trap \"\" TERM; sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait' & "
        "echo $$ >> {pids}; wait",
        3,
    ),
    "setsid_grandchild": (
        "setsid sh -c 'echo $$ >> {pids}; exec sleep 300' & echo $$ >> {pids}; wait",
        2,
    ),
    "double_forked_setsid_grandchild": (
        "setsid -f sh -c 'echo $$ >> {pids}; exec sleep 300'; echo $$ >> {pids}; exec sleep 300",
        2,
    ),
}


async def start_tree(client: WireClient, tree: str, tmp_path: Path) -> tuple[str, list[int]]:
    script, count = TREES[tree]
    pid_file = tmp_path / "pids"
    run = await client.execute(argv=["sh", "-c", script.format(pids=pid_file)])
    await wait_until(lambda: pid_file.exists() and len(pids_in_file(str(pid_file))) >= count)
    pids = pids_in_file(str(pid_file))
    assert all(alive(pid) for pid in pids)
    return run, pids


async def assert_all_gone(pids: list[int], reaper: int) -> None:
    await wait_until(lambda: not any(alive(pid) for pid in pids), bound=15)
    await wait_until(lambda: not set(zombie_children(reaper)) & set(pids), bound=5)


@pytest.mark.parametrize("tree", sorted(TREES))
async def test_cancel_leaves_nothing(served: Served, tree: str, tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_client(served.url) as client:
            run, pids = await start_tree(client, tree, tmp_path)
            result = await client.call("control", type="CANCEL", run=run)
            assert result["rung"] == (
                "sigkill" if tree == "grandchildren_ignore_sigterm" else "sigterm"
            )
            # The reply comes once the run is over: nothing of it is left at this point.
            assert not any(alive(pid) for pid in pids)
            record = await client.wait_completed(run)
        assert record.completed is not None
        assert record.completed["outcome"] == "cancelled"
        await assert_all_gone(pids, os.getpid())


async def test_paused_tree_then_cancelled(served: Served, tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_client(served.url) as client:
            run, pids = await start_tree(client, "plain", tmp_path)
            await client.call("control", type="PAUSE", run=run)
            result = await client.call("control", type="CANCEL", run=run)
            # It was continued, so SIGTERM could act: no need for SIGKILL.
            assert result["rung"] == "sigterm"
            await client.wait_completed(run)
        await assert_all_gone(pids, os.getpid())


@pytest.mark.parametrize("tree", sorted(TREES))
async def test_abrupt_disconnect_leaves_nothing(served: Served, tree: str, tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_client(served.url) as client:
            _run, pids = await start_tree(client, tree, tmp_path)
            # Drop the TCP connection with no WebSocket close handshake, like a lost laptop.
            await client.ws._stream.aclose()
        await assert_all_gone(pids, os.getpid())


@pytest.mark.parametrize("tree", sorted(TREES))
async def test_sigterm_to_daemon_leaves_nothing(tree: str, tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with run_daemon("--term-grace", "1") as daemon:
            async with open_client(daemon.url) as client:
                run, pids = await start_tree(client, tree, tmp_path)
                daemon.process.send_signal(signal.SIGTERM)
                # The client is told, then its run ends through the ladder.
                record = await client.wait_completed(run)
                assert record.completed is not None
                assert record.completed["reason"] == "daemon shutdown"
                assert any(n["method"] == "shutdown" for n in client.notifications)
            with trio.fail_after(20):
                code = await daemon.process.wait()
            assert code == 0
        await assert_all_gone(pids, daemon.process.pid)
