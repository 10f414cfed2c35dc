"""Usage demo of the supervision layer: `python -m cc_executor.supervision.usage`.

Spawns a real process tree (a child, a grandchild, a grandchild in its own session, and a
double-forked process that escaped with setsid), pauses it and checks in /proc that every
member is stopped, resumes it, cancels it and checks that none survived. Asserts what it
shows and ends with a unique run marker, `USAGE_supervision_<UTC timestamp>`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import uuid
from datetime import UTC, datetime

import structlog
import trio

from cc_executor.supervision import (
    Cancelled,
    Rung,
    RunRegistry,
    RunState,
    Signalled,
    SpawnSpec,
    SupervisionConfig,
    enable_subreaper,
    run_reaper,
)
from cc_executor.supervision.testing import (
    Recorder,
    process_state,
    process_tree_argv,
    start_run,
    wait_for_tree,
)

LIMIT = 20  # seconds for the whole demo; it takes well under one


async def demo() -> None:
    # As the daemon does: orphans of the tree are reparented to us, and reaped.
    subreaper = enable_subreaper()
    config = SupervisionConfig(term_grace=1.0, kill_wait=2.0, drain_timeout=1.0)
    registry = RunRegistry()
    recorder = Recorder()
    spec = SpawnSpec(
        process_tree_argv(),
        {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        f"usage-{uuid.uuid4().hex[:12]}",
    )
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            if subreaper:
                await nursery.start(run_reaper, registry)
            async with trio.open_nursery() as runs:
                run = await start_run(runs, spec, config, registry, recorder)
                pids = await wait_for_tree(recorder)
                print("tree    :", pids)
                assert set(pids.values()) <= run.members(), (pids, run.members())

                await run.pause()  # returns once the kernel shows every member stopped
                states = {label: process_state(pid) for label, pid in pids.items()}
                print("paused  :", states)
                observed = [run.state]
                assert set(states.values()) == {"T"}, states

                await run.resume()
                states = {label: process_state(pid) for label, pid in pids.items()}
                print("resumed :", states)
                observed.append(run.state)
                assert observed == [RunState.PAUSED, RunState.RUNNING], observed
                assert "T" not in states.values(), states

                rung = await run.cancel("usage demo over")
                print("cancel  :", rung)
                assert rung is Rung.SIGTERM, rung
            gone = {label: process_state(pid) for label, pid in pids.items()}
            print("after   :", gone)
            assert set(gone.values()) <= {None, "Z"}, gone
            assert run.outcome == Cancelled(
                "usage demo over", Rung.SIGTERM, Signalled(signal.SIGTERM)
            ), run.outcome
            print("outcome :", run.outcome)
            nursery.cancel_scope.cancel()
    print(f"USAGE_supervision_{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}")


def main() -> None:
    # The layer's own debug lines would bury the demo's output; warnings go to stderr.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    trio.run(demo)


if __name__ == "__main__":
    main()
