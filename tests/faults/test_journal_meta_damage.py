"""A journal whose head (magic, META record) is damaged, through a daemon restart, over the wire.

Observed on main: the next daemon logged ``journal.unreadable`` and the run vanished — `list`
did not show it, `status` and `attach` answered -32002 — and if it had been live when its
daemon died, its processes were never killed.  Now it is still a run: named by its file, shown
with ``journal.meta_damaged``, its readable records replayed, completed as lost if it was live
(its leftovers killed by their marker), to admins only (its owner is unknown).
"""

from __future__ import annotations

import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from ccx_testing import RunRecord, alive, pids_in_file, run_daemon, wait_until
from durable_testing import DurableClient, open_durable_client
from faults_journal_testing import flip_byte
from mcp_testing import Recording, mcp_client

from cc_executor.supervision.journal_codec import FRAME, MAGIC

SCRIPT = "for i in $(seq 1 20); do echo line $i; sleep 0.005; done"
ADMIN, ALICE = "root-token-012345678901", "alice-token-0123456789"
TOKENS = f"alice:{ALICE},root:{ADMIN}:admin"


def meta_end(data: bytes) -> int:
    """Where the META record of an intact journal ends."""
    length: int = FRAME.unpack_from(data, len(MAGIC))[0]
    return len(MAGIC) + FRAME.size + length


def flip_meta(path: Path) -> None:
    flip_byte(path, len(MAGIC) + FRAME.size + 12)  # in its payload: its CRC fails


def cut_meta(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(MAGIC) + 10])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def garbage(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(300))


async def completed_run(state: Path, *args: str) -> tuple[str, RunRecord, Path]:
    """A durable run that exits 0, recorded by a daemon that is then stopped."""
    async with (
        run_daemon("--state-dir", str(state), *args) as daemon,
        open_durable_client(daemon.url) as client,
    ):
        run = (await client.call("execute", argv=["sh", "-c", SCRIPT], durable=True))["run"]
        first = await client.wait_completed(run)
        assert first.completed is not None
        assert first.completed["exit_code"] == 0
    return run, first, state / "journals" / f"{run}.journal"


def listed(runs: list[dict[str, Any]], run: str) -> dict[str, Any]:
    (entry,) = [r for r in runs if r["run"] == run]
    return entry


async def replay(client: DurableClient, run: str) -> RunRecord:
    attached = await client.attach(run, 0)
    assert attached["journal"]["meta_damaged"] is not None
    return await client.wait_completed(run)


async def test_a_flipped_meta_byte_keeps_the_run_and_every_event_after_it(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    with trio.fail_after(90):
        run, first, path = await completed_run(state)
        end = meta_end(path.read_bytes())
        flip_meta(path)
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            entry = listed((await client.call("list"))["runs"], run)
            await daemon.wait_logged("durable.recovered")  # every line of recovery is read
            assert any('"journal.meta_damaged"' in line for line in daemon.stderr_lines)
            assert not any('"journal.unreadable"' in line for line in daemon.stderr_lines)
            status = await client.call("status", run=run)
            assert entry == status
            # What the META said is unknown; what the records after it say is kept.
            assert (status["state"], status["outcome"], status["exit_code"]) == (
                "completed",
                "exited",
                0,
            )
            assert (status["pid"], status["pgid"], status["argv"]) == (None, None, [])
            assert "owner" not in status
            assert "started" not in status
            assert status["stdout_bytes"] == len(first.stdout)
            damage = status["journal"]["meta_damaged"]
            assert damage["reason"] == "META record corrupt (CRC mismatch)"
            assert (damage["offset"], damage["bytes"]) == (len(MAGIC), end - len(MAGIC))
            assert status["journal"]["quota_bytes"] is None
            again = await replay(client, run)
            assert again.completed is not None
            assert first.completed is not None
            assert again.completed["seq"] == first.completed["seq"]
            assert (again.completed["outcome"], again.completed["pid"]) == ("exited", None)
            assert bytes(again.stdout) == bytes(first.stdout)  # no event was lost
            assert client.gaps == []
            ps = await trio.run_process(
                [sys.executable, "-m", "cc_executor.executor", "ps", "--url", daemon.url],
                capture_stdout=True,
            )
            (row,) = [line for line in ps.stdout.decode().splitlines() if line.startswith(run)]
            assert row.endswith("(unknown: its journal's META is damaged)")


@pytest.mark.parametrize(
    ("damage", "reason", "gap"),
    [
        (cut_meta, "META record cut short", True),
        (empty, "empty file", False),
        (garbage, "not a cc-executor journal's magic; ", True),
    ],
    ids=["cut", "empty", "garbage"],
)
async def test_a_journal_with_nothing_readable_is_a_lost_run_that_says_why(
    tmp_path: Path, damage: Callable[[Path], None], reason: str, gap: bool
) -> None:
    state = tmp_path / "state"
    with trio.fail_after(120):
        run, _, path = await completed_run(state)
        damage(path)
        for start in range(2):  # the second daemon reads what the first recorded: the same run
            async with (
                run_daemon("--state-dir", str(state)) as daemon,
                open_durable_client(daemon.url) as client,
            ):
                status = await client.call("status", run=run)
                assert listed((await client.call("list"))["runs"], run) == status
                assert (status["state"], status["outcome"]) == ("completed", "lost")
                # The reason says what the file is at each start (the completion is in it now).
                head = status["journal"]["meta_damaged"]
                assert head["reason"].startswith(reason) or start == 1
                again = await replay(client, run)
                assert again.completed is not None
                assert again.stdout == bytearray()
                assert [g["reason"].startswith("journal damaged") for g in client.gaps] == (
                    [True] if gap else []
                )
                assert again.completed["seq"] == (2 if gap else 1)


async def test_a_live_run_whose_meta_is_damaged_has_its_leftovers_killed_by_marker(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    pid_file = tmp_path / "pids"
    # The root, a background child in its group, and a grandchild that left the session.
    script = (
        f"echo $$ >> {pid_file}; sleep 300 & echo $! >> {pid_file}; "
        f"setsid sh -c 'echo $$ >> {pid_file}; exec sleep 300' & "
        "echo ready; exec sleep 300"
    )
    with trio.fail_after(90):
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            run = (await client.call("execute", argv=["sh", "-c", script], durable=True))["run"]
            await client.wait_output(run, b"ready\n")
            await wait_until(lambda: pid_file.exists() and len(pids_in_file(str(pid_file))) == 3)
            pids = pids_in_file(str(pid_file))
            daemon.process.send_signal(signal.SIGKILL)
            await daemon.process.wait()
        flip_meta(state / "journals" / f"{run}.journal")
        assert all(alive(pid) for pid in pids)
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            await wait_until(lambda: not any(alive(pid) for pid in pids), bound=15)
            status = await client.call("status", run=run)
            assert (status["state"], status["outcome"]) == ("completed", "lost")
            assert status["journal"]["meta_damaged"] is not None
            again = await replay(client, run)
            assert b"ready\n" in again.stdout


async def test_a_run_whose_owner_is_unknown_is_shown_to_admins_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tokens = {"CCX_TOKENS": TOKENS}
    with trio.fail_after(90):
        async with (
            run_daemon("--state-dir", str(state), env=tokens) as daemon,
            open_durable_client(f"{daemon.url}?token={ALICE}") as alice,
        ):
            run = (await alice.call("execute", argv=["sh", "-c", SCRIPT], durable=True))["run"]
            await alice.wait_completed(run)
        flip_meta(state / "journals" / f"{run}.journal")
        async with (
            run_daemon("--state-dir", str(state), env=tokens) as daemon,
            open_durable_client(f"{daemon.url}?token={ALICE}") as alice,
            open_durable_client(f"{daemon.url}?token={ADMIN}") as admin,
        ):
            assert (await alice.call("list"))["runs"] == []
            for method in ("status", "attach"):
                assert (await alice.call_error(method, run=run)).code == -32002
            status = await admin.call("status", run=run)
            assert status["journal"]["meta_damaged"] is not None
            assert listed((await admin.call("list"))["runs"], run) == status
            assert (await replay(admin, run)).completed is not None


async def test_retention_removes_a_damaged_runs_events_and_keeps_the_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with trio.fail_after(120):
        run, first, path = await completed_run(state, "--retention-seconds", "3600")
        assert first.completed is not None
        flip_meta(path)
        for _ in range(2):  # compacted by the first; read again by the second
            async with (
                run_daemon("--state-dir", str(state), "--retention-seconds", "0") as daemon,
                open_durable_client(daemon.url) as client,
            ):
                status = await wait_removed(client, run)
                assert (status["outcome"], status["exit_code"]) == ("exited", 0)
                assert status["journal"]["meta_damaged"] is not None
                last = first.completed["seq"] - 1
                assert status["journal"]["removed"] == {"first": 1, "last": last}
                error = await client.call_error("attach", run=run, from_seq=0)
                assert error.code == -32009
                await client.attach(run, last)
                assert (await client.wait_completed(run)).completed is not None


async def wait_removed(client: DurableClient, run: str) -> dict[str, Any]:
    """Poll ``status`` until retention has compacted the run (there is no event for it)."""
    while True:
        status: dict[str, Any] = await client.call("status", run=run)
        if status["journal"]["removed"] is not None:
            return status
        await trio.sleep(0.05)


async def test_mcp_tools_see_the_run_and_read_what_is_readable(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with trio.fail_after(90):
        run, first, path = await completed_run(state)
        flip_meta(path)
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            mcp_client(daemon.url, Recording()) as client,
        ):

            async def tool(name: str, **arguments: Any) -> Any:
                result = await client.result("tools/call", {"name": name, "arguments": arguments})
                assert result["isError"] is False, result
                return result["structuredContent"]

            status = await tool("status", run=run)
            assert status["journal"]["meta_damaged"] is not None
            assert (status["outcome"], status["pid"]) == ("exited", None)
            assert run in {entry["run"] for entry in (await tool("list"))["runs"]}
            read = await tool("read_output", run=run, from_seq=0)
            assert read["complete"] is True
            assert "".join(e.get("data", "") for e in read["events"]) == first.stdout.decode()
