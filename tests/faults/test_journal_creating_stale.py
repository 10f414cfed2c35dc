"""A daemon killed while it created a journal leaves its ``<run>.journal.creating`` behind
(supervision/journal_config.py, `create_locked`: the head is written under that name, then
linked).  The next start removes such a file once it is provably abandoned — nobody holds its
lock and it is older than a creation could take — and never one that may be in use.

Real files in a real state directory, a real daemon reading it; the crash itself is stood in
for by the files it leaves (a daemon SIGKILLed inside those microseconds cannot be aimed at).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import trio
from ccx_testing import make_config, open_client, start_daemon
from faults_journal_testing import write_old_journals

from cc_executor.supervision.journal_config import ABANDONED_AFTER

OLD = time.time() - 2 * ABANDONED_AFTER


def _aged(path: Path) -> Path:
    os.utime(path, (OLD, OLD))
    return path


async def test_abandoned_creating_files_are_removed_and_others_kept(nursery: trio.Nursery) -> None:
    config = make_config()
    journals = Path(config.state_dir) / "journals"
    await write_old_journals(journals, ["old-0", "old-1"])
    # Killed before the link: a head and nothing else.  After it: a second name of a journal.
    unlinked = journals / "never-linked.journal.creating"
    unlinked.write_bytes(b"\x00partial head")
    _aged(unlinked)
    linked = journals / "old-0.journal.creating"
    os.link(journals / "old-0.journal", linked)
    _aged(linked)
    # Being created right now (a second daemon on the same directory): new, or locked.
    fresh = journals / "fresh.journal.creating"
    fresh.write_bytes(b"")
    held = journals / "held.journal.creating"
    held.write_bytes(b"")
    _aged(held)
    lock = os.open(held, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with trio.fail_after(30):
            served = await start_daemon(nursery, config)
            async with open_client(served.url) as client:
                listed = {run["run"] for run in (await client.call("list"))["runs"]}
                await client.call("attach", run="old-0", from_seq=0)
                assert bytes((await client.wait_completed("old-0")).stdout) == b"old-0\n"
    finally:
        os.close(lock)
    assert listed == {"old-0", "old-1"}  # no .creating file is taken for a run
    assert not unlinked.exists()
    assert not linked.exists()
    assert (journals / "old-0.journal").stat().st_nlink == 1
    assert fresh.exists()
    assert held.exists()
