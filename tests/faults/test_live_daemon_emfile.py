"""A live daemon out of file descriptors (a real ``prlimit --pid <daemon> --nofile=N:``, N what
it holds) while clients attach, list and a durable run completes; then the limit raised.

Probed, and it held: nothing here needed a fix.  The test keeps the behaviour the failure model
promises (docs/operations.md, "no file descriptor while clients attach ..."): an attach is
answered and its follow ends with ``process.journal_error`` naming the error (after the open
was retried for ``kill_wait``), ``list`` is answered, a durable run that completes meanwhile is
delivered and recorded whole, and once descriptors are free again every run replays in full, and
a restart reads them as completed.  (New connections meanwhile: test_transport_emfile.py.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio
from ccx_testing import run_daemon
from durable_testing import open_durable_client
from faults_journal_testing import wait_notification

pytestmark = pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs util-linux prlimit")


def soft_limit(pid: int, limit: int | None) -> None:
    """Set the soft RLIMIT_NOFILE of a live process (None: back to its hard limit)."""
    value = "unlimited" if limit is None else str(limit)
    if limit is None:
        with open(f"/proc/{pid}/limits") as f:
            hard = next(line.split()[4] for line in f if line.startswith("Max open files"))
        value = hard
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={value}:"], check=True)


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_attach_list_and_a_completion_without_descriptors_then_recovery(
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    waiting = ["sh", "-c", f'echo one; while [ ! -e "{go}" ]; do sleep 0.05; done; echo two']
    with trio.fail_after(120):
        async with (
            run_daemon("--state-dir", str(tmp_path / "state")) as daemon,
            open_durable_client(daemon.url) as starter,
            open_durable_client(daemon.url) as follower,
            open_durable_client(daemon.url) as lister,
        ):
            pid = daemon.process.pid
            old = (await starter.call("execute", argv=["echo", "old"], durable=True))["run"]
            old_record = await starter.wait_completed(old)
            live = (await starter.call("execute", argv=waiting, durable=True))["run"]
            await starter.wait_output(live, b"one\n")

            soft_limit(pid, descriptors(pid))  # not one descriptor to spare
            try:
                # An attach is answered, then its follow ends with the error: it never hangs.
                attached = await follower.attach(old, 0)
                assert attached["state"] == "completed"
                fault = await wait_notification(follower, "process.journal_error", old)
                assert fault["reason"].startswith("cannot read the journal:")
                assert "Too many open files" in fault["reason"]
                assert fault["seq"] == 1  # nothing was sent
                # list is answered from memory.
                listed = {run["run"] for run in (await lister.call("list"))["runs"]}
                assert {old, live} <= listed
                # A durable run completes meanwhile: its starter gets the completion.
                go.touch()
                live_record = await starter.wait_completed(live)
                assert live_record.completed is not None
                assert live_record.completed["outcome"] == "exited"
                assert bytes(live_record.stdout) == b"one\ntwo\n"
            finally:
                soft_limit(pid, None)

            # Descriptors free again: attaching again replays each run whole.
            for run, record in ((old, old_record), (live, live_record)):
                await follower.attach(run, 0)
                replayed = await follower.wait_completed(run)
                assert replayed.completed == record.completed
                assert replayed.stdout == record.stdout
            assert follower.gaps == []
            async with open_durable_client(daemon.url) as late:
                run = (await late.call("execute", argv=["echo", "after"], durable=True))["run"]
                assert bytes((await late.wait_completed(run)).stdout) == b"after\n"
            assert daemon.process.returncode is None
    # And a restart reads both journals as completed.
    with trio.fail_after(60):
        async with (
            run_daemon("--state-dir", str(tmp_path / "state")) as daemon,
            open_durable_client(daemon.url) as client,
        ):
            for run in (old, live):
                status = await client.call("status", run=run)
                assert (status["state"], status["outcome"]) == ("completed", "exited")
