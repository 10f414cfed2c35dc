"""Clients that vanish (a real TCP reset) while their lookups wait for the state directory.

A restarted daemon answers a lookup of a run (list, status, attach) only once every journal is
read.  A client that goes away meanwhile takes its waiting request with it: its session ends
at once, nothing of it is left behind when the read is over, and the daemon answers the next
client in full.  The slow read is held back by a gate in front of the function that reads the
journals (standing in for a slow or hung volume, which cannot be made here); the resets, the
daemon, its state directory and the clients are real.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from ccx_testing import make_config, open_client, start_daemon, wait_until
from faults_journal_testing import write_old_journals
from faults_net_testing import connect, read_until, reset, upgrade_head

from bench.rawws import client_frame
from cc_executor.executor.runs import recovery
from cc_executor.executor.runs.recovery import open_journals as recovery_open
from cc_executor.supervision.journal import JournalConfig


def request(request_id: int, method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


# What each vanishing client sent last: lookups answered in the reader's turn, a control on a
# run not live here (found through the run's handles), and a batch (answered by a task).
LAST_WORDS: tuple[Any, ...] = (
    request(1, "list"),
    request(2, "status", run="old-0"),
    request(3, "status"),
    request(4, "attach", run="old-1", from_seq=0),
    request(5, "detach", run="old-1"),
    request(6, "control", run="old-0", type="PAUSE"),
    [request(7, "list"), request(8, "status", run="old-1")],
)


async def _ask_and_vanish(port: int, last_words: Any) -> None:
    sock = await connect(port)
    await sock.send(upgrade_head(port))
    assert (await read_until(sock, b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    await sock.send(client_frame(0x1, orjson.dumps(last_words)))
    await trio.testing.wait_all_tasks_blocked(0.05)  # the daemon holds the request
    reset(sock)


async def test_clients_reset_while_their_lookups_wait_leave_nothing_behind(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config()
    journals = Path(config.state_dir) / "journals"
    await write_old_journals(journals, ["old-0", "old-1"])
    release = threading.Event()

    def held_back(paths: list[str], journal_config: JournalConfig) -> Any:
        assert release.wait(60), "the test never released the state directory"
        return recovery_open(paths, journal_config)

    monkeypatch.setattr(recovery, "open_journals", held_back)
    try:
        with trio.fail_after(60):
            served = await start_daemon(nursery, config)
            daemon = served.daemon
            for last_words in LAST_WORDS:
                await _ask_and_vanish(served.port, last_words)
            # Each session ends with its connection, its lookup still waiting.
            await wait_until(lambda: not daemon.sessions)
            release.set()
            async with open_client(served.url) as client:
                listed = {run["run"] for run in (await client.call("list"))["runs"]}
                assert listed == {"old-0", "old-1"}
                assert (await client.call("status", run="old-0"))["outcome"] == "exited"
                await client.call("attach", run="old-1", from_seq=0)
                assert bytes((await client.wait_completed("old-1")).stdout) == b"old-1\n"
                assert len(daemon.sessions) == 1
    finally:
        release.set()  # a failed test must not leave the reading thread waiting
    assert daemon.metrics.internal_errors == {}
