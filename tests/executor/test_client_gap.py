"""A durable run whose journal quota is reached (gap policy): callers get an explicit Gap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import attrs
import trio
from ccx_testing import make_config, start_daemon

from cc_executor.executor.client import Completed, Gap, Output, open_connection
from cc_executor.executor.config.server import ServerConfig


def _gap_at(quota: int, tmp_path: Path) -> ServerConfig:
    """A daemon whose durable runs stop recording at `quota` bytes, with a gap marker."""
    config = make_config(state_dir=str(tmp_path / "state"))
    return attrs.evolve(
        config, journal=attrs.evolve(config.journal, quota_bytes=quota, quota_policy="gap")
    )


async def test_the_library_yields_a_gap_then_the_completion(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    served = await start_daemon(nursery, _gap_at(1_000_000, tmp_path))
    with trio.fail_after(60):
        async with open_connection(served.url) as conn:
            # Far more output than the quota, in chunks of at most max_chunk (256 KiB) each.
            run = await conn.execute(["seq", "1", "500000"], durable=True)
            events = [event async for event in run]
    gaps = [e for e in events if isinstance(e, Gap)]
    assert len(gaps) == 1
    assert gaps[0].reason == "journal quota reached"
    assert isinstance(events[-1], Completed)
    assert events[-1].exit_code == 0
    before = [e for e in events if isinstance(e, Output) and e.seq < gaps[0].seq]
    assert before, "output was recorded up to the quota"
    # What arrived is an exact prefix of the output, and the gap says where it stops.
    received = b"".join(e.data for e in before)
    assert "".join(f"{i}\n" for i in range(1, 500_001)).encode().startswith(received)
    assert 0 < len(received) <= 1_000_000
    assert all(e.seq < gaps[0].seq for e in events if isinstance(e, Output))


async def test_ccx_logs_says_where_the_journal_has_a_gap(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """`ccx logs` printed the recorded prefix and exited 0 with nothing on stderr: the run's
    output looked whole. It now says the gap on stderr, as `ccx attach` does."""
    served = await start_daemon(nursery, _gap_at(100_000, tmp_path))
    with trio.fail_after(60):
        async with open_connection(served.url) as conn:
            run = await conn.execute(["seq", "1", "100000"], durable=True)
            events = [event async for event in run]
        (gap,) = [e for e in events if isinstance(e, Gap)]
        done = await trio.run_process(
            [sys.executable, "-m", "cc_executor.executor", "logs", "--url", served.url, run.id],
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert (
        done.stderr
        == f"ccx: output from seq {gap.seq} was not recorded (journal quota reached)\n".encode()
    )
    assert "".join(f"{i}\n" for i in range(1, 100_001)).encode().startswith(done.stdout)
