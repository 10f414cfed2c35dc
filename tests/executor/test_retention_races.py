"""Retention is housekeeping beside live work: runs that start while it compacts are kept, and
a sweep that fails ends neither the daemon nor retention.

Found by a chaos run (real RSTs, a filling disk, flipped bytes and retention at once): a
durable run created while a compaction waited for its worker thread changed the table the
sweep was walking, and the daemon exited with "dictionary changed size during iteration".
Here the compaction is held (it stands for a slow disk) until the run has started; the full
disk under a compaction is a real one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from ccx_testing import DaemonProcess, make_config, run_daemon, start_daemon, wait_until
from durable_testing import DurableClient, open_durable_client
from faults_journal_testing import fill, small_tmpfs

from cc_executor.supervision.journal import Journal
from cc_executor.supervision.journal_retention import compact

BOUND = 30
COMPACT = "cc_executor.executor.runs.durable.compact"  # what the daemon's retention calls


async def _removed(client: DurableClient, run: str) -> bool:
    """What `status` says: the run's events are removed."""
    status = await client.call("status", run=run)
    return status["journal"]["removed"] is not None


async def test_a_run_started_while_retention_compacts_is_kept(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compacting, go_on = trio.Event(), trio.Event()

    async def slow_compact(journal: Journal) -> None:
        compacting.set()
        await go_on.wait()
        await compact(journal)

    monkeypatch.setattr(COMPACT, slow_compact)
    served = await start_daemon(
        nursery, make_config(state_dir=str(tmp_path / "state"), retention_seconds=0)
    )
    with trio.fail_after(BOUND):
        async with open_durable_client(served.url) as client:
            old = (await client.call("execute", argv=["seq", "1", "3"], durable=True))["run"]
            await client.wait_completed(old)
            await compacting.wait()  # the sweep is inside its walk of the runs
            new = (await client.call("execute", argv=["echo", "new"], durable=True))["run"]
            go_on.set()
            record = await client.wait_completed(new)
            assert record.stdout == b"new\n"
            await wait_until(lambda: served.daemon.durable.runs[old].journal.removed is not None)
            assert await _removed(client, old)
            listed = await client.call("list")
            assert {old, new} <= {r["run"] for r in listed["runs"]}
    assert served.daemon.metrics.internal_errors["durable.retention"] == 0


async def test_a_sweep_that_fails_is_counted_and_retention_goes_on(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def failing_once(journal: Journal) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in retention")
        await compact(journal)

    monkeypatch.setattr(COMPACT, failing_once)
    served = await start_daemon(
        nursery, make_config(state_dir=str(tmp_path / "state"), retention_bytes=0)
    )
    metrics = served.daemon.metrics
    with trio.fail_after(BOUND):
        async with open_durable_client(served.url) as client:
            first = (await client.call("execute", argv=["echo", "one"], durable=True))["run"]
            await client.wait_completed(first)
            await wait_until(lambda: metrics.internal_errors["durable.retention"] == 1)
            assert not await _removed(client, first)
            # The next run's completion is the next sweep: it compacts both.
            second = (await client.call("execute", argv=["echo", "two"], durable=True))["run"]
            record = await client.wait_completed(second)
            assert record.stdout == b"two\n"
            for run in (first, second):
                journal = served.daemon.durable.runs[run].journal
                await wait_until(lambda journal=journal: journal.removed is not None)
                assert await _removed(client, run)
    assert metrics.internal_errors["durable.retention"] == 1


@contextlib.asynccontextmanager
async def _compaction_refused(
    tmp_path: Path,
) -> AsyncIterator[tuple[DaemonProcess, DurableClient, str, Path]]:
    """A completed durable run on a small tmpfs, the disk then filled to its last byte, and a
    daemon whose retention (0 s) has tried to compact it and been refused: yields the daemon,
    a client, the run and the file that fills the disk (unlink it to make room)."""
    with small_tmpfs(tmp_path / "disk") as disk, trio.fail_after(BOUND * 2):
        state = str(disk / "state")
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            old = (await client.call("execute", argv=["seq", "1", "3"], durable=True))["run"]
            await client.wait_completed(old)
        filler = fill(disk)
        async with (
            run_daemon("--state-dir", state, "--retention-seconds", "0") as daemon,
            open_durable_client(daemon.url) as client,
        ):
            await daemon.wait_logged("journal.compact_failed")
            assert not await _removed(client, old)
            yield daemon, client, old, filler


async def test_a_compaction_on_a_full_disk_keeps_the_journal_and_is_done_later(
    tmp_path: Path,
) -> None:
    """A real full disk (a small tmpfs filled to its last byte) when retention compacts: the
    compacted file cannot be written, the journal stays whole and readable, the daemon serves,
    and once there is room the next sweep (the next run's completion) compacts it."""
    async with _compaction_refused(tmp_path) as (_, client, old, filler):
        await client.attach(old, 0)
        assert (await client.wait_completed(old)).stdout == b"1\n2\n3\n"
        filler.unlink()
        new = (await client.call("execute", argv=["echo", "new"], durable=True))["run"]
        await client.wait_completed(new)
        for run in (old, new):
            while not await _removed(client, run):  # noqa: ASYNC110 - no event for it
                await trio.sleep(0.02)


async def test_a_compaction_the_full_disk_refused_is_tried_again_once_there_is_room(
    tmp_path: Path,
) -> None:
    """Observed on main: a compaction that failed on a full disk was tried again only when
    another run completed, so a daemon with nothing more to run kept every expired journal
    on the disk it had filled.  Now the sweep tries again itself, backing off."""
    async with _compaction_refused(tmp_path) as (daemon, client, old, filler):
        filler.unlink()  # room again, and no run completes to wake retention
        await daemon.wait_logged("journal.removed")
        assert await _removed(client, old)
