"""A reply precedes the event it causes even while another connection controls the same run.

Two connections of one identity follow one durable run; one only pauses it, the other only
resumes it, both as fast as their replies come. On each connection, every `process.paused`
(`process.resumed`) it receives must come after the reply to a PAUSE (RESUME) that succeeded
there, or have been caused by the other connection's control: the one that pauses may see a
`process.resumed` at any time, but never a `process.paused` no accepted PAUSE of its own
explains yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from ccx_testing import Served, WireClient, make_config, start_daemon
from durable_testing import open_durable_client

CYCLES = 25
BOUND = 60


@pytest.fixture
async def durable_served(nursery: trio.Nursery, tmp_path: Path) -> Served:
    return await start_daemon(nursery, make_config(state_dir=str(tmp_path / "state")))


def recording(client: WireClient) -> list[tuple[Any, ...]]:
    """What `client` receives from now on, in order: ("reply", id, ok) or ("event", method)."""
    log: list[tuple[Any, ...]] = []
    absorb = client._absorb

    def recorded(message: dict[str, Any]) -> None:
        absorb(message)
        if "method" in message:
            log.append(("event", message["method"]))
        else:
            log.append(("reply", message["id"], "result" in message))

    client._absorb = recorded  # type: ignore[method-assign]
    return log


def unexplained(log: list[tuple[Any, ...]], mine: dict[Any, str], event: str) -> int:
    """How many times `event` came with no accepted control of this connection to explain it."""
    explained = missing = 0
    for entry in log:
        if entry[0] == "reply" and entry[2] and entry[1] in mine:
            explained += 1
        elif entry == ("event", event):
            if explained:
                explained -= 1
            else:
                missing += 1
    return missing


async def drive(client: WireClient, run: str, kind: str) -> dict[Any, str]:
    """Send `kind` CYCLES times, each after the last one's reply; returns the ids sent."""
    sent: dict[Any, str] = {}
    for _ in range(CYCLES):
        before = set(client.sent_ids)
        reply = await client.request("control", {"run": run, "type": kind})
        (msg_id,) = set(client.sent_ids) - before
        sent[msg_id] = kind
        if "error" in reply:
            assert reply["error"]["code"] == -32005, reply  # the other side got there first
    return sent


async def test_each_connections_control_reply_precedes_its_event(durable_served: Served) -> None:
    url = durable_served.url
    with trio.fail_after(BOUND):
        async with open_durable_client(url) as pauser, open_durable_client(url) as resumer:
            argv = ["sh", "-c", "while :; do echo tick; sleep 0.002; done"]
            run = (await pauser.call("execute", argv=argv, durable=True))["run"]
            await resumer.attach(run, 0)
            logs = {"pauser": recording(pauser), "resumer": recording(resumer)}
            sent: dict[str, dict[Any, str]] = {}

            async def go(name: str, client: WireClient, kind: str) -> None:
                sent[name] = await drive(client, run, kind)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(go, "pauser", pauser, "PAUSE")
                nursery.start_soon(go, "resumer", resumer, "RESUME")
            for client in (pauser, resumer):
                await client.call("status", run=run)  # what was in flight has arrived
            await pauser.call("control", run=run, type="CANCEL")
            await pauser.wait_completed(run)

    accepted = {
        name: sum(1 for e in logs[name] if e[0] == "reply" and e[2] and e[1] in sent[name])
        for name in logs
    }
    assert accepted["pauser"] > 1  # some cycles really paused the run
    assert accepted["resumer"] > 1
    assert unexplained(logs["pauser"], sent["pauser"], "process.paused") == 0
    assert unexplained(logs["resumer"], sent["resumer"], "process.resumed") == 0
