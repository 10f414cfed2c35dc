"""A durable run whose journal quota is reached (gap policy): callers get an explicit Gap."""

from __future__ import annotations

from pathlib import Path

import attrs
import trio
from ccx_testing import make_config, start_daemon

from cc_executor.executor.client import Completed, Gap, Output, open_connection


async def test_the_library_yields_a_gap_then_the_completion(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = make_config(state_dir=str(tmp_path / "state"))
    config = attrs.evolve(
        config, journal=attrs.evolve(config.journal, quota_bytes=1_000_000, quota_policy="gap")
    )
    served = await start_daemon(nursery, config)
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
