"""A daemon started from inside another daemon's run outlives that daemon's death.

Observed on main: ``ccx serve`` started by a run of daemon A inherited ``CCX_DAEMON=<A>`` and
``CCX_RUN_ID`` in /proc/<pid>/environ.  Once A was SIGKILLed, the next daemon on A's state
directory killed the inner daemon B as one of A's leftovers (its marker), and with it every run
of B (descent).  Now B re-executes itself with a marker of its own, and descent stops at a
process carrying another daemon's marker (executor/daemon/marking.py).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import orjson
import trio
from ccx_testing import alive, pids_in_file, run_daemon, wait_until
from daemon_records_testing import logged, records, start_sleeper
from durable_testing import open_durable_client

from cc_executor.supervision.marker import DAEMON_VAR, RUN_ID_VAR


def environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        entries = f.read().split(b"\0")
    return dict(e.decode().split("=", 1) for e in entries if b"=" in e)


def inner_daemon_script(state: Path, log: Path, pid_file: Path) -> str:
    """A run whose shell starts a daemon in the background (its parent stays: the run's root,
    exec'd into sleep), as an agent starting a daemon of its own would."""
    serve = f"{sys.executable} -m cc_executor.executor serve --port 0 --shutdown-grace 0"
    return (
        f"{serve} --state-dir {state} --log-format json 2> {log} & "
        f"echo $! > {pid_file}; echo $$ >> {pid_file}; echo ready; exec sleep 300"
    )


def listening_port(log: Path) -> int | None:
    if not log.exists():
        return None
    for line in log.read_bytes().splitlines():
        if b'"daemon.listening"' in line:
            port: int = orjson.loads(line)["ports"][0]
            return port
    return None


async def test_a_daemon_started_by_a_run_survives_the_sweep_of_its_starters_runs(
    tmp_path: Path,
) -> None:
    outer_state = str(tmp_path / "outer")
    inner_log, inner_pids = tmp_path / "inner.log", tmp_path / "inner.pids"
    other_pids, inner_run_pids = tmp_path / "other.pids", tmp_path / "inner-run.pids"
    started: list[int] = []
    try:
        with trio.fail_after(120):
            async with (
                run_daemon("--state-dir", outer_state) as outer,
                open_durable_client(outer.url) as client,
            ):
                script = inner_daemon_script(tmp_path / "inner", inner_log, inner_pids)
                run = (await client.call("execute", argv=["sh", "-c", script]))["run"]
                await client.wait_output(run, b"ready\n")
                await start_sleeper(client, other_pids)  # another run of the outer daemon
                await wait_until(lambda: listening_port(inner_log) is not None, bound=60)
                inner, outer_root = pids_in_file(str(inner_pids))
                started.append(inner)
                inner_url = f"ws://127.0.0.1:{listening_port(inner_log)}/"
                # Re-executed, same pid: its own marker, and not the run's.
                [outer_record] = records(outer_state)
                marks = environ(inner)
                assert RUN_ID_VAR not in marks
                assert marks[DAEMON_VAR] != outer_record.removesuffix(".lock")
                assert records(str(tmp_path / "inner")) == [marks[DAEMON_VAR] + ".lock"]
                async with open_durable_client(inner_url) as inner_client:
                    # Durable: it outlives this connection.
                    inner_run = await start_sleeper(inner_client, inner_run_pids, durable=True)
                [inner_root] = pids_in_file(str(inner_run_pids))
                started.append(inner_root)
                outer.process.send_signal(signal.SIGKILL)
                await outer.process.wait()
            [other] = pids_in_file(str(other_pids))
            assert all(alive(pid) for pid in (inner, outer_root, other, inner_root))
            async with run_daemon("--state-dir", outer_state) as third:
                await third.wait_logged("daemon.records_checked")
                [killed] = logged(third.stderr_lines, "daemon.leftovers_killed")
                # The outer daemon's leftovers died, the parent of the inner daemon among them.
                assert not alive(other)
                assert not alive(outer_root)
                assert {other, outer_root} <= set(killed["killed"])  # type: ignore[call-overload]
                # The inner daemon and its run did not, and it serves on.
                assert alive(inner)
                assert alive(inner_root)
            async with open_durable_client(inner_url) as inner_client:
                await inner_client.attach(inner_run)
                await inner_client.call("control", type="CANCEL", run=inner_run)
                await inner_client.wait_completed(inner_run)
            assert not alive(inner_root)
            os.kill(inner, signal.SIGTERM)
            await wait_until(lambda: not alive(inner), bound=30)
            assert records(str(tmp_path / "inner")) == []  # a graceful stop
    finally:
        for pid in started:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_a_daemon_that_is_a_durable_runs_root_is_not_killed_as_that_root(
    tmp_path: Path,
) -> None:
    """``ccx serve`` as a durable run's command: the next start completes the run as lost and
    kills what is left of it, the root found by its pid and start time — but the root, having
    re-executed itself as a daemon, is that daemon, not the run's."""
    outer_state = str(tmp_path / "outer")
    inner_run_pids = tmp_path / "inner-run.pids"
    serve = f"{sys.executable} -m cc_executor.executor serve --port 0 --shutdown-grace 0"
    script = f"exec {serve} --state-dir {tmp_path / 'inner'} --log-format json 2>&1"
    started: list[int] = []
    try:
        with trio.fail_after(120):
            async with (
                run_daemon("--state-dir", outer_state) as outer,
                open_durable_client(outer.url) as client,
            ):
                argv = ["sh", "-c", script]
                run = (await client.call("execute", argv=argv, durable=True))["run"]
                output = await client.wait_output(run, b'"daemon.listening"')
                line = next(x for x in output.stdout.splitlines() if b"daemon.listening" in x)
                listening = orjson.loads(line)
                inner = listening["pid"]
                started.append(inner)
                inner_url = f"ws://127.0.0.1:{listening['ports'][0]}/"
                async with open_durable_client(inner_url) as inner_client:
                    await start_sleeper(inner_client, inner_run_pids, durable=True)
                [inner_root] = pids_in_file(str(inner_run_pids))
                started.append(inner_root)
                outer.process.send_signal(signal.SIGKILL)
                await outer.process.wait()
            async with run_daemon("--state-dir", outer_state) as third:
                await third.wait_logged("daemon.records_checked")
                [lost] = logged(third.stderr_lines, "run.lost")
                assert lost["run"] == run
                assert alive(inner)
                assert alive(inner_root)
            os.kill(inner, signal.SIGTERM)
            await wait_until(lambda: not alive(inner), bound=30)
            assert not alive(inner_root)  # its runs end with it
    finally:
        for pid in started:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
