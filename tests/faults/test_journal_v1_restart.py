"""A state directory of v1 journals (written by a daemon before format v2, records not bound
to their journal) under a daemon of this version: both runs listed, the one that completed
replayed as it was, the one that died with that daemon completed as lost — its cut tail a gap,
its completion appended as a v1 record — and replayed through its damage.  Real files, built
by hand as v1 bytes (the codec with seed UNBOUND); a real daemon.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio
from ccx_testing import run_daemon
from durable_testing import open_durable_client
from faults_journal_testing import MISSING_PID, flip_byte, write_v1_journal

from cc_executor.supervision.events import Completed, CompletedEvent, Output, SequencedEvent
from cc_executor.supervision.journal import Meta, boot_id
from cc_executor.supervision.journal_codec import (
    DAMAGED,
    FRAME,
    MAGIC_V1,
    UNBOUND,
    encode_entry,
)
from cc_executor.supervision.outcome import Exited


def v1_journal(path: Path, run_id: str, events: list[SequencedEvent]) -> list[int]:
    """A v1 journal of a run of an earlier daemon (a pid nobody has); each record's offset."""
    meta = Meta(
        run_id=run_id,
        pid=MISSING_PID,
        pgid=MISSING_PID,
        argv=("sh",),
        started_wall=time.time() - 60,
        boot_id=boot_id(),
        quota_bytes=1 << 20,
        quota_policy="block",
        owner="local",
    )
    return write_v1_journal(path, meta, events)


def lines(run_id: str, count: int) -> list[SequencedEvent]:
    return [
        Output(seq=i, stream="stdout", data=f"{run_id} {i}\n".encode()) for i in range(1, count + 1)
    ]


async def test_v1_journals_are_recovered_and_replayed_as_before(tmp_path: Path) -> None:
    journals = tmp_path / "state" / "journals"
    journals.mkdir(parents=True)
    done = CompletedEvent(seq=6, completed=Completed(Exited(3), 40, 0, duration=1.0))
    v1_journal(journals / "old-done.journal", "old-done", [*lines("old-done", 5), done])
    offsets = v1_journal(journals / "old-lost.journal", "old-lost", lines("old-lost", 5))
    flip_byte(journals / "old-lost.journal", offsets[1] + FRAME.size + 3)  # seq 2's CRC fails
    lost = journals / "old-lost.journal"
    lost.write_bytes(lost.read_bytes()[:-3])  # seq 5 torn: it died mid-write
    with trio.fail_after(60):
        async with (
            run_daemon("--state-dir", str(tmp_path / "state")) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            await daemon.wait_logged("durable.recovered")
            listed = {run["run"] for run in (await client.call("list"))["runs"]}
            assert listed == {"old-done", "old-lost"}
            await client.attach("old-done", 0)
            replayed = await client.wait_completed("old-done")
            expected = b"".join(f"old-done {i}\n".encode() for i in range(1, 6))
            assert bytes(replayed.stdout) == expected
            assert replayed.completed is not None
            assert (replayed.completed["seq"], replayed.completed["exit_code"]) == (6, 3)
            assert client.gaps == []
            status = await client.call("status", run="old-lost")
            assert status["outcome"] == "lost"
            await client.attach("old-lost", 0)
            recovered = await client.wait_completed("old-lost")
            assert bytes(recovered.stdout) == b"old-lost 1\nold-lost 3\nold-lost 4\n"
            cut = f"{DAMAGED}: {len(encode_entry(lines('old-lost', 5)[-1], UNBOUND)) - 3} bytes"
            assert [(g["reason"], g["seq"]) for g in client.gaps] == [
                (DAMAGED, 2),
                (f"{cut} cut at its end", 5),
            ]
            assert recovered.completed is not None
            assert recovered.completed["seq"] == 6
    # The completion was appended as v1: the file still reads as v1 throughout.
    assert lost.read_bytes().startswith(MAGIC_V1)
