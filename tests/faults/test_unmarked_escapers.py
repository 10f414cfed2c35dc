"""Processes of a run that shed every mark of it: a new session, a new group, an empty
environment (``setsid env -i``), and a parent that died.

Observed on main (a real ``ccx serve``): ``sh -c "setsid env -i sh -c 'exec sleep 1000' &"``
completed and left the sleep running, and so did a CANCEL of a run whose shell had started one:
the cancel's SIGTERM to the group ended the shell first, the kernel moved the sleep to the
daemon, and there nothing tied it to the run (its marker was in the environment it cleared).
Now a run remembers every member a scan saw, scans before it signals, and an orphan no scan saw
is the run's when only that run can have started it; with an older live run that could have,
it waits for the end of the last such run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import trio
from ccx_testing import alive, open_client, pids_in_file, proc_stat, run_daemon, wait_until

SLEEP = shutil.which("sleep") or "/bin/sleep"


def _escaper(pid_file: Path) -> str:
    """Shell words that start a `sleep` with no mark of the run in the background, and wait
    until it has written its pid (it has left the group and cleared its environment by then)."""
    started = f"setsid env -i /bin/sh -c 'echo $$ > {pid_file}; exec {SLEEP} 1000' >/dev/null &"
    return f"{started} while [ ! -s {pid_file} ]; do sleep 0.01; done"


async def _pid_from(pid_file: Path) -> int:
    await wait_until(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"))
    (pid,) = pids_in_file(str(pid_file))
    return pid


def _state(pid: int) -> str:
    stat = proc_stat(pid)
    assert stat is not None, f"{pid} is gone"
    return stat[0]


async def test_an_unmarked_escaper_ends_with_its_run(tmp_path: Path) -> None:
    natural, cancelled, paused = (tmp_path / name for name in ("natural", "cancelled", "paused"))
    with trio.fail_after(60):
        async with run_daemon() as daemon, open_client(daemon.url) as client:
            # The run's root exits at once: no scan ever saw the sleep in its tree.
            run = await client.execute(argv=["sh", "-c", f"{_escaper(natural)}; echo started"])
            await client.wait_completed(run)
            assert not alive(await _pid_from(natural))

            # The root lives; the orphan is made by a subshell that exits.
            words = f"({_escaper(paused)}); echo started; exec {SLEEP} 1000"
            run = await client.execute(argv=["sh", "-c", words])
            escaper = await _pid_from(paused)
            await client.call("control", type="PAUSE", run=run)
            assert _state(escaper) == "T"
            await client.call("control", type="RESUME", run=run)
            assert _state(escaper) != "T"
            await client.call("control", type="CANCEL", run=run)
            assert not alive(escaper)

            # The root lives, and is the escaper's parent until the cancel's SIGTERM ends it.
            words = f"{_escaper(cancelled)}; exec {SLEEP} 1000"
            run = await client.execute(argv=["sh", "-c", words])
            escaper = await _pid_from(cancelled)
            await client.call("control", type="CANCEL", run=run)
            assert not alive(escaper)


async def test_an_unmarked_escaper_waits_for_every_run_that_may_own_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "escaper"
    with trio.fail_after(60):
        async with run_daemon() as daemon, open_client(daemon.url) as client:
            older = await client.execute(argv=[SLEEP, "1000"], durable=True)
            run = await client.execute(argv=["sh", "-c", f"{_escaper(pid_file)}; echo started"])
            await client.wait_completed(run)
            escaper = await _pid_from(pid_file)
            # The older run may have started it as well: not ended by a run that cannot tell.
            assert alive(escaper)
            later = await client.execute(argv=["true"])
            await client.wait_completed(later)
            assert alive(escaper)  # started after it: cannot be its
            await client.call("control", type="CANCEL", run=older)
            await client.wait_completed(older)
            assert not alive(escaper)


# The daemon as PID 1 of a pid namespace of its own, as in the container.
PID_1 = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM")


def _pid_namespace_available() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return False
    probe = subprocess.run([*PID_1, "true"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(word) for word in (task / "children").read_text().split()]
    return found


def _with_argv(pids: list[int], argv: bytes) -> list[int]:
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes() == argv:
                found.append(pid)
    return found


@pytest.mark.skipif(not _pid_namespace_available(), reason="needs root and unshare --pid")
async def test_as_pid_1_an_orphan_from_outside_the_runs_is_left_alone() -> None:
    """Where the daemon is PID 1 (the container) every orphan of the namespace is adopted by
    it, not only its runs': one a `podman exec` left (here: `nsenter`) is nobody's run's."""
    with trio.fail_after(60):
        async with run_daemon(wrapper=PID_1) as daemon, open_client(daemon.url) as client:
            (serve,) = _children(daemon.process.pid)  # PID 1 of the namespace
            run = await client.execute(argv=[SLEEP, "1000"])
            enter = ("nsenter", "--target", str(serve), "--pid", "--mount", "--")
            await trio.run_process([*enter, "sh", "-c", f"{SLEEP} 1001 >/dev/null 2>&1 &"])
            argv = SLEEP.encode() + b"\0" + b"1001\0"
            await wait_until(lambda: bool(_with_argv(_children(serve), argv)))
            (stranger,) = _with_argv(_children(serve), argv)  # an orphan the daemon adopted
            try:
                # It started after the run's root, and no other run is live.
                await client.call("control", type="CANCEL", run=run)
                await client.wait_completed(run)
                later = await client.execute(argv=["true"])
                await client.wait_completed(later)
                assert alive(stranger)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(stranger, signal.SIGKILL)
