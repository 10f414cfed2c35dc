"""Recovery reads journals many per worker-thread hand-off: every one is still recovered,
completed ones listed as they ended, one whose head is garbage listed by its file's name, one
without a completion completed as lost."""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs
import trio

from cc_executor.executor.config.server import config_from_env
from cc_executor.executor.runs.durable import DurableRuns
from cc_executor.executor.runs.recovery import RECOVER_BATCH
from cc_executor.supervision import Completed, CompletedEvent, Exited, Output
from cc_executor.supervision.journal import Journal, JournalConfig, Meta, boot_id

MISSING_PID = 4_194_000  # above any pid this machine hands out (pid_max is 4194304 at most)


def _meta(run_id: str, i: int) -> Meta:
    return Meta(
        run_id=run_id,
        pid=MISSING_PID + i % 100,
        pgid=MISSING_PID + i % 100,
        argv=("echo", str(i)),
        started_wall=time.time() - 60 + i / 1000,
        boot_id=boot_id(),
        quota_bytes=1 << 20,
        quota_policy="block",
        owner="local",
    )


async def test_more_journals_than_one_batch_are_all_recovered(tmp_path: Path) -> None:
    directory = tmp_path / "journals"
    directory.mkdir()
    config = JournalConfig(fsync="never")
    count = RECOVER_BATCH + 44
    for i in range(count):
        run_id = f"many-{i:04d}"
        journal = Journal.create(str(directory / f"{run_id}.journal"), _meta(run_id, i), config)
        await journal.deliver(Output(seq=1, stream="stdout", data=b"%d\n" % i))
        if i != 7:  # run 7 died with its daemon: no completion
            completed = Completed(outcome=Exited(i % 3), stdout_bytes=2, stderr_bytes=0, duration=0)
            await journal.deliver(CompletedEvent(seq=2, completed=completed))
        await journal.close()
    (directory / "garbage.journal").write_bytes(b"not a journal at all")
    runs = DurableRuns(attrs.evolve(config_from_env({}), state_dir=str(tmp_path)), "x")
    with trio.fail_after(60):
        await runs.recover()
    assert len(runs.runs) == count + 1
    garbage = runs.runs["garbage"]
    assert garbage.owner is None
    assert garbage.journal.meta is None
    assert garbage.info(trio.current_time()).state == "completed"
    now = trio.current_time()
    for i in (0, RECOVER_BATCH - 1, RECOVER_BATCH, count - 1):
        info = runs.runs[f"many-{i:04d}"].info(now)
        assert info.completion is not None
        assert (info.completion.outcome, info.completion.exit_code) == ("exited", i % 3)
        assert info.wire is not None  # made once: list copies it
        assert (
            runs.runs[f"many-{i:04d}"].ended_wall
            == os.stat(directory / f"many-{i:04d}.journal").st_mtime
        )
    lost = runs.runs["many-0007"].info(now)
    assert lost.completion is not None
    assert lost.completion.outcome == "lost"
