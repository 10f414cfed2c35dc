"""One reaper per process: SIGCHLD handling is process-wide."""

from __future__ import annotations

import signal

import pytest
import trio

from cc_executor.supervision import ReaperAlreadyRunning, RunRegistry, run_reaper


async def test_a_second_reaper_is_refused_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGCHLD)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_reaper, RunRegistry())
            assert signal.getsignal(signal.SIGCHLD) is not before
            with pytest.raises(ReaperAlreadyRunning):
                await run_reaper(RunRegistry())
            nursery.cancel_scope.cancel()
    # The first reaper's exit puts back exactly what was there before it.
    assert signal.getsignal(signal.SIGCHLD) == before
