"""Per-identity limits (concurrent runs, starts per minute, output) and per-run rlimits."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio
import trio.testing
from ccx_testing import make_config, open_client, start_daemon

from cc_executor.executor.config.policyfile import Limits, LimitSet, Policy
from cc_executor.executor.runs.limits import RunLimits
from cc_executor.executor.transport.frontdoor import Identity
from cc_executor.protocol import LimitExceeded
from cc_executor.supervision import ResourceLimits
from cc_executor.supervision.spawn import find_prlimit

TOKENS = {
    "alice-token-0123456789": Identity("alice"),
    "bob-token-012345678901": Identity("bob"),
}


def url_for(base: str, token: str) -> str:
    return f"{base}?token={token}"


async def test_starts_per_minute_is_a_sliding_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = RunLimits(
        Limits(
            default=LimitSet(starts_per_minute=2),
            identities={"ci": LimitSet(starts_per_minute=3)},
        )
    )
    limits.admit("alice").release()
    await trio.sleep(30)
    limits.admit("alice").release()
    with pytest.raises(LimitExceeded) as info:
        limits.admit("alice")
    assert info.value.data == {
        "limit": "starts_per_minute",
        "value": 2,
        "identity": "alice",
        "retry_after": 30.0,
    }
    assert "retry in 30.0 s" in info.value.message
    # Other identities have windows of their own, and overrides of their own.
    for _ in range(3):
        limits.admit("ci").release()
    with pytest.raises(LimitExceeded):
        limits.admit("ci")
    await trio.sleep(29.5)
    with pytest.raises(LimitExceeded):
        limits.admit("alice")  # the refused starts did not count, the first still does
    await trio.sleep(0.5)
    limits.admit("alice")  # the first start left the window
    with pytest.raises(LimitExceeded):
        limits.admit("alice")


def test_concurrent_runs_count_until_released() -> None:
    limits = RunLimits(Limits(default=LimitSet(concurrent_runs=2)))
    first = limits.admit("alice")
    limits.admit("alice")
    with pytest.raises(LimitExceeded) as info:
        limits.admit("alice")
    assert info.value.data == {"limit": "concurrent_runs", "value": 2, "identity": "alice"}
    assert "alice already has 2 runs (limit concurrent_runs=2)" in info.value.message
    limits.admit("bob")
    first.release()
    first.release()  # idempotent
    limits.admit("alice")
    assert limits.live("alice") == 2


async def test_concurrent_runs_per_identity_over_the_wire(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    policy = Policy(
        limits=Limits(
            default=LimitSet(concurrent_runs=1),
            identities={"bob": LimitSet(concurrent_runs=2)},
        )
    )
    served = await start_daemon(nursery, make_config(tokens=TOKENS, policy=policy))
    marker = tmp_path / "ran"
    with trio.fail_after(30):
        async with (
            open_client(url_for(served.url, "alice-token-0123456789")) as alice,
            open_client(url_for(served.url, "alice-token-0123456789")) as alice2,
            open_client(url_for(served.url, "bob-token-012345678901")) as bob,
        ):
            first = await alice.execute(argv=["sleep", "30"])
            # The limit is the identity's, across its connections, durable runs included.
            for client, durable in ((alice, False), (alice2, False), (alice2, True)):
                exc = await client.call_error(
                    "execute", argv=["touch", str(marker)], durable=durable
                )
                assert exc.code == -32003
                assert exc.data == {"limit": "concurrent_runs", "value": 1, "identity": "alice"}
            assert not marker.exists()
            # Bob's override: two at once.
            bob_runs = [await bob.execute(argv=["sleep", "30"]) for _ in range(2)]
            exc = await bob.call_error("execute", argv=["true"])
            assert exc.data["value"] == 2
            # A run that ends frees its slot.
            await alice.call("control", run=first, type="CANCEL")
            await alice.wait_completed(first)
            second = await alice2.execute(argv=["echo", "again"])
            assert bytes((await alice2.wait_completed(second)).stdout) == b"again\n"
            for run in bob_runs:
                await bob.call("control", run=run, type="CANCEL")
    assert served.daemon.metrics.refusals.get("concurrent_runs") == 4


async def test_starts_per_minute_over_the_wire(nursery: trio.Nursery, tmp_path: Path) -> None:
    policy = Policy(limits=Limits(default=LimitSet(starts_per_minute=2)))
    served = await start_daemon(nursery, make_config(policy=policy))
    marker = tmp_path / "ran"
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            for _ in range(2):
                await client.wait_completed(await client.execute(argv=["true"]))
            exc = await client.call_error("execute", argv=["touch", str(marker)])
            assert exc.code == -32003
            assert exc.data["limit"] == "starts_per_minute"
            assert exc.data["identity"] == "local"
    assert not marker.exists()


async def test_output_limit_cancels_the_run(nursery: trio.Nursery) -> None:
    policy = Policy(limits=Limits(default=LimitSet(max_output_bytes=100_000)))
    served = await start_daemon(nursery, make_config(policy=policy))
    with trio.fail_after(30):
        async with open_client(served.url) as client:
            run = await client.execute(argv=["yes"])
            record = await client.wait_completed(run)
            durable = await client.execute(argv=["yes"], durable=True)
            durable_record = await client.wait_completed(durable)
    for done in (record, durable_record):
        completed = done.completed
        assert completed is not None
        assert completed["status"] == "canceled"
        assert completed["outcome"] == "cancelled"
        assert completed["reason"] == "output limit of 100000 bytes exceeded"
        # Output stops within a few reads of the limit.
        assert 100_000 < len(done.stdout) < 100_000 + 4 * 1024 * 1024


def real_sh() -> str:
    found = shutil.which("sh")
    assert found is not None
    return os.path.realpath(found)


needs_prlimit = pytest.mark.skipif(find_prlimit() is None, reason="prlimit (util-linux) missing")


@needs_prlimit
async def test_rlimits_are_visible_inside_the_child(nursery: trio.Nursery) -> None:
    resources = ResourceLimits(
        cpu_seconds=77, address_space_bytes=2 * 1024**3, open_files=37, processes=4321
    )
    served = await start_daemon(nursery, make_config(policy=Policy(resources=resources)))
    script = "ulimit -n; ulimit -t; ulimit -v; cat /proc/self/limits"
    with trio.fail_after(20):
        async with open_client(served.url) as client:
            run = await client.execute(argv=["sh", "-c", script])
            record = await client.wait_completed(run)
            out = bytes(record.stdout).decode()
            n, t, v, *_ = out.splitlines()
            assert (n, t, v) == ("37", "77", str(2 * 1024**2))
            limits = {line[:26].strip(): line[26:].split()[:2] for line in out.splitlines()[4:]}
            assert limits["Max cpu time"] == ["77", "77"]
            assert limits["Max address space"] == [str(2 * 1024**3)] * 2
            assert limits["Max open files"] == ["37", "37"]
            assert limits["Max processes"] == ["4321", "4321"]
            # The pid is the command's own (prlimit execs it in place), and so is the file:
            # prlimit execs the real path the policy checked, which is then also argv[0].
            started = await client.call("execute", argv=["sh", "-c", 'echo "$0 $$"'])
            record = await client.wait_completed(started["run"])
            assert bytes(record.stdout).decode().split() == [real_sh(), str(started["pid"])]
            # Spawn errors are still spawn errors.
            exc = await client.call_error("execute", argv=["no-such-command-ccx"])
            assert exc.code == -32006
            assert "command not found: no-such-command-ccx" in exc.message


@needs_prlimit
async def test_cpu_limit_ends_a_busy_child(nursery: trio.Nursery) -> None:
    resources = ResourceLimits(cpu_seconds=1)
    served = await start_daemon(nursery, make_config(policy=Policy(resources=resources)))
    with trio.fail_after(30):
        async with open_client(served.url) as client:
            run = await client.execute(argv=["sh", "-c", "while :; do :; done"])
            record = await client.wait_completed(run)
    assert record.completed is not None
    assert record.completed["outcome"] == "signalled"
    assert record.completed["signal"] in ("SIGXCPU", "SIGKILL")
