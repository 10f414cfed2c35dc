"""Durable runs end to end: they outlive clients, replay from any seq, and never wait for one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import attrs
import pytest
import trio
from ccx_testing import RpcError, Served, make_config, start_daemon, wait_until
from durable_testing import drop, open_durable_client, wait_state

SEQ_2M = "".join(f"{i}\n" for i in range(1, 2_000_001)).encode()


@pytest.fixture
async def durable_served(nursery: trio.Nursery, tmp_path: Path) -> Served:
    return await start_daemon(nursery, make_config(state_dir=str(tmp_path / "state")))


async def test_ten_abrupt_disconnects_then_exact_concatenation(durable_served: Served) -> None:
    url = durable_served.url
    collected = bytearray()
    last = 0
    with trio.fail_after(120):
        async with open_durable_client(url) as client:
            result = await client.call("execute", argv=["seq", "1", "2000000"], durable=True)
            run = result["run"]
            assert result["durable"] is True
            while client.runs.get(run) is None or client.runs[run].last_seq < 2:
                await client.receive()
            record = client.runs[run]
            collected += record.stdout
            last = record.last_seq
            await drop(client)
        for _ in range(10):
            async with open_durable_client(url) as client:
                attached = await client.attach(run, last)
                assert attached["from_seq"] == last
                record = client.runs[run]
                while record.completed is None and record.last_seq < last + 3:
                    await client.receive()
                collected += record.stdout
                last = record.last_seq
                await drop(client)
        async with open_durable_client(url) as client:
            await client.attach(run, last)
            record = await client.wait_completed(run)
            collected += record.stdout
            assert record.completed is not None
            assert record.completed["exit_code"] == 0
    assert len(collected) == len(SEQ_2M)
    assert hashlib.sha256(collected).digest() == hashlib.sha256(SEQ_2M).digest()


async def test_a_slow_client_slows_neither_the_others_nor_the_child(
    durable_served: Served,
) -> None:
    url = durable_served.url
    fast_done = trio.Event()
    fast_finished = 0
    results: dict[str, bytes] = {}
    with trio.fail_after(120):
        async with open_durable_client(url) as starter:
            run = (await starter.call("execute", argv=["seq", "1", "2000000"], durable=True))["run"]
            await drop(starter)

        async def fast(name: str) -> None:
            nonlocal fast_finished
            async with open_durable_client(url) as client:
                await client.attach(run, 0)
                record = await client.wait_completed(run)
                results[name] = bytes(record.stdout)
                fast_finished += 1
                if fast_finished == 2:
                    fast_done.set()

        async def slow() -> None:
            async with open_durable_client(url) as client:
                await client.attach(run, 0)
                await client.receive()  # one event, then nothing until the others are done
                await fast_done.wait()
                record = client.runs[run]
                completed_seq = record.last_seq
                status = await client.call("status", run=run)
                # The child finished while this client sat on its first frames.
                assert status["state"] == "completed"
                assert completed_seq < status["last_seq"] / 2
                record = await client.wait_completed(run)
                results["slow"] = bytes(record.stdout)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)
            nursery.start_soon(fast, "a")
            nursery.start_soon(fast, "b")
    assert results.keys() == {"a", "b", "slow"}
    for output in results.values():
        assert output == SEQ_2M


async def test_runs_without_any_client_and_replays_whole_afterwards(
    durable_served: Served, tmp_path: Path
) -> None:
    marker = tmp_path / "finished"
    script = f"seq 1 100000; echo oops >&2; echo end > {marker}; exit 3"
    with trio.fail_after(60):
        async with open_durable_client(durable_served.url) as client:
            run = (await client.call("execute", argv=["sh", "-c", script], durable=True))["run"]
            await client.call("detach", run=run)
        # Nobody is attached (the first client has gone): the child must finish by itself.
        await wait_until(marker.exists, bound=30)
        async with open_durable_client(durable_served.url) as client:
            status = await wait_state(client, run, "completed")
            listed = {r["run"]: r for r in (await client.call("list"))["runs"]}
            assert listed[run]["durable"] is True
            assert listed[run]["last_seq"] == status["last_seq"]
            await client.attach(run, 0)
            record = await client.wait_completed(run)
    assert bytes(record.stdout) == "".join(f"{i}\n" for i in range(1, 100_001)).encode()
    assert bytes(record.stderr) == b"oops\n"
    assert record.completed is not None
    assert record.completed["exit_code"] == 3
    assert record.completed["seq"] == status["last_seq"]


async def test_detach_stops_events_and_controls_work_from_any_connection(
    durable_served: Served,
) -> None:
    script = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.01; done"
    with trio.fail_after(60):
        async with (
            open_durable_client(durable_served.url) as a,
            open_durable_client(durable_served.url) as b,
        ):
            run = (await a.call("execute", argv=["sh", "-c", script], durable=True))["run"]
            await a.wait_output(run, b"3\n")
            await b.attach(run, 0)
            await b.call("control", type="PAUSE", run=run)
            while not any(e["method"] == "process.paused" for e in a.runs[run].events):
                await a.receive()
            await b.call("control", type="RESUME", run=run)
            detached = await a.call("detach", run=run)
            assert detached["status"] == "detached"
            seen = a.runs[run].last_seq
            assert detached["last_sent_seq"] == seen
            await b.call("signal", run=run, signal="TERM")
            record = await b.wait_completed(run)
            assert record.completed is not None
            assert record.completed["signal"] == "SIGTERM"
            # After the detach reply, nothing of the run reached `a`.
            await a.call("status")
            assert a.runs[run].last_seq == seen
            error = await a.call_error("control", type="PAUSE", run=run)
            assert error.code == -32005


async def test_attach_errors(durable_served: Served) -> None:
    with trio.fail_after(30):
        async with open_durable_client(durable_served.url) as client:
            error = await client.call_error("attach", run="nope")
            assert error.code == -32002
            run = (await client.call("execute", argv=["echo", "hi"], durable=True))["run"]
            await client.wait_completed(run)
            error = await client.call_error("attach", run=run, from_seq=99)
            assert error.code == -32602
            assert error.data["last_seq"] == 2
            error = await client.call_error("attach", run=run, from_seq=-1)
            assert error.code == -32602
            await client.attach(run, 1)
            record = await client.wait_completed(run)
            assert record.stdout == b""
            error = await client.call_error("detach", run="nope")
            assert error.code == -32002


async def test_retention_removes_events_and_says_so(nursery: trio.Nursery, tmp_path: Path) -> None:
    config = make_config(state_dir=str(tmp_path / "state"), retention_bytes=0)
    served = await start_daemon(nursery, config)
    with trio.fail_after(30):
        async with open_durable_client(served.url) as client:
            run = (await client.call("execute", argv=["seq", "1", "3"], durable=True))["run"]
            record = await client.wait_completed(run)
            last = record.last_seq

            async def removed() -> bool:
                status = await client.call("status", run=run)
                return status["journal"]["removed"] is not None

            # Retention runs as soon as the run completes; no event tells a client so.
            while not await removed():  # noqa: ASYNC110
                await trio.sleep(0.01)
            error = await client.call_error("attach", run=run, from_seq=0)
            assert isinstance(error, RpcError)
            assert error.code == -32009
            assert error.data == {
                "run": run,
                "removed_first": 1,
                "removed_last": last - 1,
                "available_from_seq": last - 1,
            }
            await client.attach(run, last - 1)
            record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["outcome"] == "exited"


async def test_gap_policy_marks_what_was_not_recorded(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = make_config(state_dir=str(tmp_path / "state"))
    config = attrs.evolve(
        config, journal=attrs.evolve(config.journal, quota_bytes=1_000_000, quota_policy="gap")
    )
    served = await start_daemon(nursery, config)
    with trio.fail_after(60):
        async with open_durable_client(served.url) as client:
            run = (await client.call("execute", argv=["seq", "1", "500000"], durable=True))["run"]
            record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["exit_code"] == 0
            assert len(client.gaps) == 1
            assert client.gaps[0]["reason"] == "journal quota reached"
            full = "".join(f"{i}\n" for i in range(1, 500_001)).encode()
            assert full.startswith(bytes(record.stdout))
            assert 0 < len(record.stdout) < 1_000_000
            status = await client.call("status", run=run)
            assert status["journal"]["gap_from_seq"] == client.gaps[0]["seq"]
            assert status["journal"]["quota_policy"] == "gap"


async def test_block_policy_blocks_the_child_until_cancelled(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = make_config(state_dir=str(tmp_path / "state"))
    config = attrs.evolve(config, journal=attrs.evolve(config.journal, quota_bytes=200_000))
    served = await start_daemon(nursery, config)
    with trio.fail_after(60):
        async with open_durable_client(served.url) as client:
            run = (await client.call("execute", argv=["seq", "1", "5000000"], durable=True))["run"]

            async def blocked() -> bool:
                status = await client.call("status", run=run)
                return bool(status["journal"]["blocked"])

            while not await blocked():  # noqa: ASYNC110 - no event for an unattached client
                await trio.sleep(0.01)
            status = await client.call("status", run=run)
            assert status["state"] == "running"
            assert status["journal"]["bytes"] <= 200_000
            canceled = await client.call("control", type="CANCEL", run=run)
            assert canceled["status"] == "canceled"
            record = await client.wait_completed(run)
            assert record.completed is not None
            assert record.completed["outcome"] == "cancelled"


async def test_a_detach_after_the_completion_was_sent_says_the_completions_seq(
    durable_served: Served,
) -> None:
    """A follow that has sent the completion is over; detaching it then still says how far it
    got (before, 0: a client that detached a moment late was told nothing was sent)."""
    with trio.fail_after(60):
        async with (
            open_durable_client(durable_served.url) as starter,
            open_durable_client(durable_served.url) as follower,
        ):
            run = (await starter.call("execute", argv=["seq", "1", "1000"], durable=True))["run"]
            await starter.wait_completed(run)
            never = await follower.call("detach", run=run)
            assert never["last_sent_seq"] == 0  # not followed from here yet
            await follower.attach(run, 0)
            record = await follower.wait_completed(run)
            assert record.completed is not None
            for _ in range(2):  # idempotent
                detached = await follower.call("detach", run=run)
                assert detached["last_sent_seq"] == record.completed["seq"] == record.last_seq
