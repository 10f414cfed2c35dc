"""No thread can be started (a full pids cgroup: a run's fork bomb fills it, and it counts the
daemon's threads too): journal writes behind the pump, fsyncs and compaction are made in the
event loop instead of failing the run with ``RuntimeError: can't start new thread``.

The fault is real: this process is moved into a pids cgroup whose ``pids.max`` is what it has,
and trio's idle worker threads are taken, so the next thread cannot start.  Linux, root, and a
writable pids controller (cgroup v1 ``/sys/fs/cgroup/pids`` or v2) are needed; else skipped.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from faults_journal_testing import journal_meta, read_all

from cc_executor.supervision.events import Completed, CompletedEvent, Output
from cc_executor.supervision.journal import Journal, JournalConfig
from cc_executor.supervision.journal_batch import THREAD_BYTES
from cc_executor.supervision.journal_retention import compact
from cc_executor.supervision.outcome import Exited
from cc_executor.supervision.threads import in_thread

CHUNK = 64 * 1024
BATCH = 2 * THREAD_BYTES  # every full batch goes behind


def _pids_root() -> Path | None:
    for root in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if (root / "cgroup.procs").exists() and (
            root.name == "pids" or "pids" in _read(root / "cgroup.controllers")
        ):
            return root
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@contextlib.contextmanager
def no_threads() -> Iterator[None]:
    """While inside: this process may not start one more thread (nor fork)."""
    root = _pids_root()
    if os.geteuid() != 0 or root is None:
        pytest.skip("needs root and a pids cgroup controller")
    group = root / f"ccx-test-no-threads-{os.getpid()}"
    try:
        group.mkdir()
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as exc:
        with contextlib.suppress(OSError):
            group.rmdir()
        pytest.skip(f"cannot use a pids cgroup here: {exc}")
    gate = threading.Event()
    try:
        (group / "pids.max").write_text((group / "pids.current").read_text())
        with contextlib.suppress(RuntimeError):  # take every idle worker: then none can start
            for _ in range(10_000):
                trio.lowlevel.start_thread_soon(gate.wait, lambda _: None)
        yield
    finally:
        gate.set()
        (group / "pids.max").write_text("max")
        (root / "cgroup.procs").write_text(str(os.getpid()))
        group.rmdir()


def output(seq: int) -> Output:
    return Output(seq=seq, stream="stdout", data=bytes([seq % 251]) * CHUNK)


def completion(seq: int) -> CompletedEvent:
    done = Completed(outcome=Exited(0), stdout_bytes=0, stderr_bytes=0, duration=1.0)
    return CompletedEvent(seq=seq, completed=done)


async def test_writes_behind_fsync_and_compaction_without_threads(tmp_path: Path) -> None:
    count = 20  # 1.25 MiB: several batches that would go behind in a worker thread
    config = JournalConfig(fsync="completion", batch_bytes=BATCH)
    journal = Journal.create(str(tmp_path / "j"), journal_meta("r1"), config)
    with trio.fail_after(30), no_threads():
        for seq in range(1, count + 1):
            await journal.deliver(output(seq))
        await journal.deliver(completion(count + 1))  # fsynced (policy "completion")
        await journal.close()
        assert read_all(journal) == [*map(output, range(1, count + 1)), completion(count + 1)]
        await compact(journal)
    reopened = Journal.open(journal.path, config)
    assert reopened is not None
    assert reopened.completed == completion(count + 1)
    assert reopened.damaged == []


async def test_a_runtime_error_of_the_call_itself_is_not_taken_for_no_thread() -> None:
    calls: list[int] = []

    def fails() -> None:
        calls.append(1)
        raise RuntimeError("the call's own")

    with trio.fail_after(10), pytest.raises(RuntimeError, match="the call's own"):
        await in_thread(fails)
    assert calls == [1]  # made once, in its thread: not again in the event loop
