"""Recovery at start without enough file descriptors, for real (the test process's soft
RLIMIT_NOFILE lowered and every descriptor under it taken but a few).

Observed on main: recovery opened journals 256 at a time in its worker thread, and a journal
without a completion stays open (locked) until it is completed as lost — so a state directory
with more lost runs than free descriptors had the rest fail with EMFILE, logged as
`journal.unreadable`: those runs vanished from `list` and were never completed.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import trio
from faults_journal_testing import descriptors_exhausted, write_old_journals

from cc_executor.executor.config.server import config_from_env
from cc_executor.executor.runs import recovery
from cc_executor.executor.runs.durable import DurableRuns

LOST, DONE = 24, 16


async def _state_dir(tmp_path: Path) -> DurableRuns:
    run_ids = [f"run-{i:03d}" for i in range(LOST + DONE)]
    # The first LOST died with their daemon: no completion.
    await write_old_journals(tmp_path / "journals", run_ids, lost=set(run_ids[:LOST]))
    return DurableRuns(attrs.evolve(config_from_env({}), state_dir=str(tmp_path)), "x")


def _outcomes(runs: DurableRuns) -> dict[str, str]:
    now = trio.current_time()
    outcomes: dict[str, str] = {}
    for run_id, durable in runs.runs.items():
        completion = durable.info(now).completion
        assert completion is not None, run_id
        outcomes[run_id] = completion.outcome
    return outcomes


async def test_more_lost_runs_than_free_descriptors_are_all_completed(tmp_path: Path) -> None:
    runs = await _state_dir(tmp_path)
    with trio.fail_after(60), descriptors_exhausted(spare=6):
        await runs.recover()
    outcomes = _outcomes(runs)
    assert len(outcomes) == LOST + DONE  # none vanished
    assert list(outcomes.values()).count("lost") == LOST
    assert list(outcomes.values()).count("exited") == DONE


async def test_no_descriptor_at_all_leaves_the_journals_for_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = await _state_dir(tmp_path)
    monkeypatch.setattr(recovery, "STALL_BOUND", 0.3)  # the bound itself is 30 s
    with trio.fail_after(30):
        with descriptors_exhausted(spare=0):
            await runs.recover()  # gives up: nothing could be opened
        assert runs.runs == {}
        await runs.loaded()  # lookups do not wait for ever
        again = DurableRuns(runs.config, "x")
        await again.recover()
    outcomes = _outcomes(again)
    assert len(outcomes) == LOST + DONE  # nothing was marked unreadable or lost for good
    assert list(outcomes.values()).count("lost") == LOST
