"""A daemon SIGKILLed while runs that are not durable were live: the next start kills them.

Observed on main: such a run has no journal, so the processes of a daemon killed with SIGKILL
(or by the OOM killer) kept running, adopted by init, and no later daemon knew them.  Now every
process of a daemon's runs carries the daemon's id (``CCX_DAEMON``), the daemon holds a lock on
its record in the state directory while it lives, and the next start on that directory kills
whatever carries the id of a daemon whose record nobody holds (executor/daemon/record.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import trio
from ccx_testing import alive, pids_in_file, proc_stat, run_daemon, wait_until
from daemon_records_testing import logged, marked_sleep, records, start_sleeper
from durable_testing import open_durable_client

from cc_executor.executor.daemon.record import DaemonRecord, directory_of, end_dead
from cc_executor.supervision import SupervisionConfig


def tree_script(pid_file: Path) -> str:
    """A root, a background child that emptied its environment (found by descent), and a
    grandchild in a session of its own (found by its marker)."""
    return (
        f"echo $$ >> {pid_file}; "
        f"env -i sh -c 'echo $$ >> {pid_file}; exec sleep 300' & "
        f"setsid sh -c 'echo $$ >> {pid_file}; exec sleep 300' & "
        "echo ready; exec sleep 300"
    )


async def test_the_next_start_kills_what_a_sigkilled_daemon_ran(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    pid_files = [tmp_path / "first", tmp_path / "second"]
    with trio.fail_after(90):
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            for pid_file in pid_files:
                script = tree_script(pid_file)
                run = (await client.call("execute", argv=["sh", "-c", script]))["run"]
                await client.wait_output(run, b"ready\n")
            for pid_file in pid_files:
                await wait_until(lambda f=pid_file: f.exists() and len(pids_in_file(str(f))) == 3)
            [dead_record] = records(state)
            daemon.process.send_signal(signal.SIGKILL)
            await daemon.process.wait()
        pids = [pid for pid_file in pid_files for pid in pids_in_file(str(pid_file))]
        # Nobody ended them: the daemon is gone, its runs' processes are not.
        assert all(alive(pid) for pid in pids)
        async with run_daemon("--state-dir", state) as daemon:
            await daemon.wait_logged("daemon.records_checked")
            assert not any(alive(pid) for pid in pids)
            [killed] = logged(daemon.stderr_lines, "daemon.leftovers_killed")
            assert killed["daemon_id"] == dead_record.removesuffix(".lock")
            assert set(pids) <= set(killed["killed"])  # type: ignore[call-overload]
            # The dead daemon's record is gone; the live one's is there.
            [own] = records(state)
            assert own != dead_record
        # A graceful stop removes the record: nothing is left for a later start.
        assert records(state) == []


async def test_a_live_daemon_sharing_the_state_directory_keeps_its_runs(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    pid_file = tmp_path / "pids"
    with trio.fail_after(90):
        async with (
            run_daemon("--state-dir", state) as first,
            open_durable_client(first.url) as client,
        ):
            run = await start_sleeper(client, pid_file)
            [root] = pids_in_file(str(pid_file))
            [first_record] = records(state)
            async with run_daemon("--state-dir", state) as second:
                await second.wait_logged("daemon.records_checked")
                [checked] = logged(second.stderr_lines, "daemon.records_checked")
                assert checked["dead"] == 0
                assert alive(root)
                assert first_record in records(state)
                assert len(records(state)) == 2
            # The second daemon's stop touched neither the first's run nor its record.
            assert alive(root)
            assert records(state) == [first_record]
            await client.call("control", type="CANCEL", run=run)
            await client.wait_completed(run)
            assert not alive(root)


async def test_a_state_directory_without_room_for_the_record_still_serves(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "daemons").write_text("a file where the records' directory belongs\n")
    with trio.fail_after(60):
        async with (
            run_daemon("--state-dir", str(state)) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            await daemon.wait_logged("daemon.record_failed")
            [failed] = logged(daemon.stderr_lines, "daemon.record_failed")
            assert "daemons" in str(failed["error"])
            run = (await client.call("execute", argv=["echo", "served"]))["run"]
            record = await client.wait_completed(run)
            assert record.stdout == b"served\n"
            await daemon.wait_logged("daemon.records_checked")
            assert not logged(daemon.stderr_lines, "daemon.records_unreadable")


def test_release_kills_what_still_carries_the_daemons_id(tmp_path: Path) -> None:
    """The exit's last net: a process of the daemon's that outlived every run's ladder."""
    record = DaemonRecord.claim(str(tmp_path))
    assert record.error is None
    stray = marked_sleep(record.daemon_id)
    stranger = marked_sleep("another-daemon")
    try:
        killed = record.release(SupervisionConfig())
        assert killed == [stray.pid]
        assert stray.wait(timeout=10) == -signal.SIGKILL
        assert stranger.poll() is None
        assert records(str(tmp_path)) == []
    finally:
        stranger.kill()
        stranger.wait(timeout=10)
        stray.kill()
        stray.wait(timeout=10)


def test_a_record_held_by_a_live_process_is_left_alone(tmp_path: Path) -> None:
    """The lock is the proof of life, whoever holds it: here another process's."""
    held = DaemonRecord.claim(str(tmp_path))
    assert held.fd is not None
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        pass_fds=(held.fd,),
    )
    os.close(held.fd)  # the lock now lives on in the holder's copy of the descriptor alone
    victim = marked_sleep(held.daemon_id)
    try:
        assert end_dead(str(tmp_path), "own", SupervisionConfig()) == []
        assert victim.poll() is None
        holder.communicate(timeout=10)  # the holder ends: its lock with it
        [ended] = end_dead(str(tmp_path), "own", SupervisionConfig())
        assert (ended.daemon_id, ended.killed, ended.error) == (held.daemon_id, [victim.pid], None)
        assert victim.wait(timeout=10) == -signal.SIGKILL
        assert records(str(tmp_path)) == []
    finally:
        victim.kill()
        victim.wait(timeout=10)
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)


async def test_a_record_removed_by_hand_is_made_again(tmp_path: Path) -> None:
    """Observed: ``rm -r <state>/daemons`` while the daemon ran, then a SIGKILL: the next start
    found no record, and the run's process lived on, adopted by init."""
    state = str(tmp_path / "state")
    pid_file = tmp_path / "pids"
    with trio.fail_after(90):
        async with (
            run_daemon("--state-dir", state) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            await start_sleeper(client, pid_file)
            [record] = records(state)
            shutil.rmtree(directory_of(state))
            await daemon.wait_logged("daemon.record_restored")
            assert records(state) == [record]
            daemon.process.send_signal(signal.SIGKILL)
            await daemon.process.wait()
        [root] = pids_in_file(str(pid_file))
        assert alive(root)
        async with run_daemon("--state-dir", state) as daemon:
            await daemon.wait_logged("daemon.records_checked")
            assert not alive(root)
            [killed] = logged(daemon.stderr_lines, "daemon.leftovers_killed")
            assert killed["killed"] == [root]


async def test_a_file_put_in_the_place_of_a_live_record_ends_no_run(tmp_path: Path) -> None:
    """Observed: the record replaced by an unlocked file of its name (a restore from a backup,
    ``rm`` then ``touch``): a second daemon starting on the directory took the live daemon for
    a dead one and killed its run."""
    state = str(tmp_path / "state")
    pid_file = tmp_path / "pids"
    with trio.fail_after(90):
        async with (
            run_daemon("--state-dir", state) as first,
            open_durable_client(first.url) as client,
        ):
            run = await start_sleeper(client, pid_file)
            [root] = pids_in_file(str(pid_file))
            [record] = records(state)
            path = os.path.join(directory_of(state), record)
            os.unlink(path)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            await first.wait_logged("daemon.record_restored")
            async with run_daemon("--state-dir", state) as second:
                await second.wait_logged("daemon.records_checked")
                assert not logged(second.stderr_lines, "daemon.leftovers_killed")
                assert alive(root)
            await client.call("control", type="CANCEL", run=run)
            await client.wait_completed(run)


def test_names_that_are_no_record_are_left_alone(tmp_path: Path) -> None:
    """Observed: a file named ``.lock`` in daemons/ made the next start kill every process whose
    CCX_DAEMON was empty (the id it read was ""), and a directory ``x.lock`` was said removed
    at every start.  Only ``<32 hex digits>.lock``, a regular file, is a record."""
    directory = Path(directory_of(str(tmp_path)))
    directory.mkdir()
    (directory / ".lock").write_bytes(b"")
    (directory / "x.lock").write_bytes(b"")
    (directory / "0123.lock").mkdir()
    os.mkfifo(directory / ("ab" * 16 + ".lock"))
    strangers = [marked_sleep(""), marked_sleep("x"), marked_sleep("ab" * 16)]
    try:
        assert end_dead(str(tmp_path), "own", SupervisionConfig()) == []
        assert all(stranger.poll() is None for stranger in strangers)
        junk = [".lock", "0123.lock", "ab" * 16 + ".lock", "x.lock"]
        assert records(str(tmp_path)) == sorted(junk)
    finally:
        for stranger in strangers:
            stranger.kill()
            stranger.wait(timeout=10)


async def test_a_stopped_daemon_is_not_taken_for_a_dead_one(tmp_path: Path) -> None:
    """A live daemon SIGSTOPped (a debugger, ``kill -STOP``, a frozen cgroup) still holds its
    record's lock: a second daemon starting on the directory leaves its record and runs."""
    state = str(tmp_path / "state")
    pid_file = tmp_path / "pids"
    with trio.fail_after(90):
        async with (
            run_daemon("--state-dir", state) as first,
            open_durable_client(first.url) as client,
        ):
            run = await start_sleeper(client, pid_file)
            [root] = pids_in_file(str(pid_file))
            [first_record] = records(state)
            first.process.send_signal(signal.SIGSTOP)
            try:
                await wait_until(lambda: proc_stat(first.process.pid)[0] == "T")  # type: ignore[index]
                async with run_daemon("--state-dir", state) as second:
                    await second.wait_logged("daemon.records_checked")
                    [checked] = logged(second.stderr_lines, "daemon.records_checked")
                    assert checked["dead"] == 0
                    assert alive(root)
                    assert first_record in records(state)
            finally:
                first.process.send_signal(signal.SIGCONT)
            await client.call("control", type="CANCEL", run=run)
            await client.wait_completed(run)
            assert not alive(root)
            assert records(state) == [first_record]
