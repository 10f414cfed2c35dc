"""A client sees and controls only its own identity's runs, unless its token is admin."""

from __future__ import annotations

import os
import time
from pathlib import Path

import trio
from ccx_testing import RpcError, WireClient, make_config, open_client, start_daemon

from cc_executor.executor.transport.frontdoor import Identity
from cc_executor.supervision.journal import Journal, JournalConfig, Meta, boot_id

TOKENS = {
    "alice-token-0123456789": Identity("alice"),
    "bob-token-012345678901": Identity("bob"),
    "root-token-012345678901": Identity("root", admin=True),
}


def url(base: str, token: str) -> str:
    return f"{base}?token={token}"


async def refusals(client: WireClient, run: str) -> list[RpcError]:
    """Every way of naming a run, each of which must fail."""
    return [
        await client.call_error("status", run=run),
        await client.call_error("attach", run=run),
        await client.call_error("detach", run=run),
        await client.call_error("control", run=run, type="PAUSE"),
        await client.call_error("control", run=run, type="CANCEL"),
        await client.call_error("signal", run=run, signal="SIGTERM"),
        await client.call_error("stdin", run=run, data="x"),
    ]


async def test_bob_cannot_see_or_touch_alices_runs_and_an_admin_can(
    nursery: trio.Nursery,
) -> None:
    served = await start_daemon(nursery, make_config(tokens=TOKENS))
    with trio.fail_after(30):
        async with (
            open_client(url(served.url, "alice-token-0123456789")) as alice,
            open_client(url(served.url, "bob-token-012345678901")) as bob,
        ):
            durable = await alice.execute(argv=["sleep", "30"], durable=True, stdin="pipe")
            plain = await alice.execute(argv=["sleep", "30"])
            listed = await bob.call("list")
            assert listed["runs"] == []
            # Bob gets exactly what a run that does not exist gets: nothing leaks.
            nowhere = f"{served.daemon.instance}-000000000000"
            for run in (durable, plain):
                for seen, unknown in zip(
                    await refusals(bob, run), await refusals(bob, nowhere), strict=True
                ):
                    assert seen.code == unknown.code == -32002
                    assert seen.message == unknown.message.replace(nowhere, run)
            # Alice sees her durable run from another connection, with its owner.
            async with open_client(url(served.url, "alice-token-0123456789")) as again:
                status = await again.call("status", run=durable)
                assert status["owner"] == "alice"
                # Her runs on every connection, the non-durable one included.
                assert {r["run"] for r in (await again.call("list"))["runs"]} == {durable, plain}
            # An admin sees and controls every durable run.
            async with open_client(url(served.url, "root-token-012345678901")) as root:
                assert durable in [r["run"] for r in (await root.call("list"))["runs"]]
                await root.call("attach", run=durable)
                result = await root.call("control", run=durable, type="CANCEL")
                assert result["status"] == "canceled"
                record = await root.wait_completed(durable)
                assert record.completed is not None
                assert record.completed["outcome"] == "cancelled"
            await alice.call("control", run=plain, type="CANCEL")
            # Bob's own durable run is his alone.
            own = await bob.execute(argv=["true"], durable=True)
            await bob.wait_completed(own)
            assert [r["run"] for r in (await bob.call("list"))["runs"]] == [own]
            exc = await alice.call_error("status", run=own)
            assert exc.code == -32002


async def test_unauthenticated_clients_are_local_and_own_everything_they_start(
    nursery: trio.Nursery,
) -> None:
    served = await start_daemon(nursery, make_config())
    with trio.fail_after(20):
        async with open_client(served.url) as first:
            run = await first.execute(argv=["true"], durable=True)
            await first.wait_completed(run)
        async with open_client(served.url) as second:
            status = await second.call("status", run=run)
            assert status["owner"] == "local"
            await second.call("attach", run=run)
            await second.wait_completed(run)


async def test_journals_without_an_owner_belong_to_local(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A journal written before owners were recorded is read, and is "local"'s."""
    config = make_config(tokens=TOKENS, state_dir=str(tmp_path))
    os.makedirs(tmp_path / "journals")
    meta = Meta(
        run_id="old-host-1-abcdef012345",
        pid=1,
        pgid=1,
        argv=("true",),
        started_wall=time.time(),
        boot_id="another-boot",
        quota_bytes=1024,
        quota_policy="block",
    )
    journal = Journal.create(
        str(tmp_path / "journals" / "old-host-1-abcdef012345.journal"), meta, JournalConfig()
    )
    await journal.close()
    served = await start_daemon(nursery, config)
    with trio.fail_after(20):
        async with open_client(url(served.url, "alice-token-0123456789")) as alice:
            assert (await alice.call("list"))["runs"] == []
        async with open_client(url(served.url, "root-token-012345678901")) as root:
            status = await root.call("status", run=meta.run_id)
            assert status["owner"] == "local"
            assert status["outcome"] == "lost"
    assert boot_id()
