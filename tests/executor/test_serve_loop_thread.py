"""``ccx serve`` runs its event loop on a thread of its own (executor/daemon/loop.py).

Real daemons: a run's root is the loop thread's child, an orphan the daemon adopts is its first
thread's (the list every ending run reads, so it holds no roots), the orphan is still found and
ended with its run, no run's process inherits a blocked signal, and SIGINT and SIGTERM still
reach the daemon.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio
from ccx_testing import alive, open_client, pids_in_file, run_daemon, wait_until


def thread_children(pid: int) -> dict[int, set[int]]:
    """The children of each thread of `pid`, by thread id."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as listing:
            found[int(tid)] = {int(child) for child in listing.read().split()}
    return found


def blocked(pid: int, tid: int) -> set[int]:
    """The signals thread `tid` of `pid` blocks (SigBlk in its status)."""
    with open(f"/proc/{pid}/task/{tid}/status") as status:
        mask = next(int(line.split()[1], 16) for line in status if line.startswith("SigBlk:"))
    return {number for number in range(1, 65) if mask & (1 << (number - 1))}


async def test_roots_are_the_loop_threads_and_orphans_the_first_threads(tmp_path: Path) -> None:
    pid_file = tmp_path / "orphan"
    # `setsid -f` forks and its parent exits at once: the forked shell (then its sleep) is an
    # orphan, reparented to the daemon, in a session of its own; the root sleeps on.
    script = f"setsid -f sh -c 'echo $$ > {pid_file}; exec sleep 300'; exec sleep 300"
    with trio.fail_after(60):
        async with run_daemon() as daemon, open_client(daemon.url) as client:
            started = await client.call("execute", argv=["sh", "-c", script])
            root = started["pid"]
            await wait_until(lambda: pid_file.exists() and len(pids_in_file(str(pid_file))) == 1)
            (orphan,) = pids_in_file(str(pid_file))
            daemon_pid = daemon.process.pid
            await wait_until(lambda: orphan in thread_children(daemon_pid)[daemon_pid])
            by_thread = thread_children(daemon_pid)
            assert root not in by_thread[daemon_pid]
            assert [tid for tid, kids in by_thread.items() if root in kids] != [daemon_pid]
            assert any(root in kids for kids in by_thread.values())
            # The first thread blocks the daemon's signals (the loop thread receives them); the
            # loop thread, and so every run's process, blocks none.
            daemon_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
            assert blocked(daemon_pid, daemon_pid) >= daemon_signals
            (loop_thread,) = [tid for tid, kids in by_thread.items() if root in kids]
            assert not blocked(daemon_pid, loop_thread) & daemon_signals
            assert not blocked(root, root)
            assert not blocked(orphan, orphan)
            result = await client.call("control", type="CANCEL", run=started["run"])
            assert result["rung"] == "sigterm"
            # The reply comes once every process of the run is gone, the orphan with it.
            assert not alive(orphan)
            assert not alive(root)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_the_daemon_drains_on_sigint_and_sigterm(signum: int) -> None:
    with trio.fail_after(60):
        async with run_daemon() as daemon:
            async with open_client(daemon.url) as client:
                run = await client.execute(argv=["sleep", "300"])
                daemon.process.send_signal(signum)
                record = await client.wait_completed(run)
                assert record.completed is not None
                assert record.completed["reason"] == "daemon shutdown"
            assert await daemon.process.wait() == 0
            name = signal.Signals(signum).name
            assert any(f'"signal":"{name}"' in line for line in daemon.stderr_lines)


async def test_an_adopted_process_that_dies_later_is_reaped_on_its_sigchld(tmp_path: Path) -> None:
    # A process that left the run's session and dropped its marker (env -i) outlives the run
    # while an older live run may have started it as well (tests/faults/
    # test_unmarked_escapers.py), adopted by the daemon's first thread.  When it dies, its
    # SIGCHLD (received on the loop thread through the forwarded signals) starts a reaper pass
    # that collects it: no zombie stays.  The root waits until the process has its new
    # environment, so the run's end never sees it with the marker.
    pid_file = tmp_path / "escaped"
    script = (
        f"setsid -f env -i /bin/sh -c 'echo $$ > {pid_file}; exec sleep 300'; "
        f"while [ ! -s {pid_file} ]; do sleep 0.01; done"
    )
    with trio.fail_after(60):
        async with run_daemon() as daemon, open_client(daemon.url) as client:
            await client.execute(argv=["sleep", "300"])  # the older run
            run = await client.execute(argv=["sh", "-c", script])
            record = await client.wait_completed(run)
            assert record.completed is not None
            (escaped,) = pids_in_file(str(pid_file))
            daemon_pid = daemon.process.pid
            assert alive(escaped)
            await wait_until(lambda: escaped in thread_children(daemon_pid)[daemon_pid])
            os.kill(escaped, signal.SIGKILL)
            await wait_until(lambda: not os.path.exists(f"/proc/{escaped}"))


# Blocks the daemon's signals, then execs the interpreter with the rest of its arguments: the
# daemon starts with them blocked, as under a parent that left them so (a mask survives exec).
BLOCKED_LAUNCH = (
    "import os, signal, sys\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, "
    "{signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
)


async def test_a_daemon_started_with_its_signals_blocked_still_drains_on_sigterm() -> None:
    # The loop thread unblocks them: the daemon still hears SIGTERM, and its runs (which
    # inherit the loop thread's mask) do not start with them blocked.
    daemon_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
    with trio.fail_after(60):
        async with run_daemon(python=("-c", BLOCKED_LAUNCH)) as daemon:
            async with open_client(daemon.url) as client:
                started = await client.call("execute", argv=["sleep", "300"])
                assert not blocked(started["pid"], started["pid"]) & daemon_signals
                daemon.process.send_signal(signal.SIGTERM)
                with trio.fail_after(20):
                    record = await client.wait_completed(started["run"])
                assert record.completed is not None
                assert record.completed["reason"] == "daemon shutdown"
            assert await daemon.process.wait() == 0
