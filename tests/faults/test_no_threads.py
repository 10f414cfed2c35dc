"""No thread can be started (a full pids cgroup: a run's fork bomb fills it, and it counts the
daemon's threads too): journal writes behind the pump, fsyncs and compaction are made in the
event loop instead of failing the run with ``RuntimeError: can't start new thread``, and a
daemon started where no thread can start (its leftovers filling the cgroup) serves, logs and
stops on SIGTERM.

The fault is real: a process is moved into a pids cgroup whose ``pids.max`` is what it has
(for the journal, this one, with trio's idle worker threads taken, so the next thread cannot
start).  Linux, root, and a writable pids controller (cgroup v1 ``/sys/fs/cgroup/pids`` or v2)
are needed; else skipped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import trio
from ccx_testing import stop_process, unused_port
from faults_journal_testing import journal_meta, read_all
from faults_net_testing import http_get

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
def pids_cgroup(name: str) -> Iterator[Path]:
    """A new pids cgroup (removed after: its processes must be gone or moved out by then)."""
    root = _pids_root()
    if os.geteuid() != 0 or root is None:
        pytest.skip("needs root and a pids cgroup controller")
    group = root / f"ccx-test-{name}-{os.getpid()}"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a pids cgroup here: {exc}")
    try:
        yield group
    finally:
        with contextlib.suppress(OSError):
            (group / "pids.max").write_text("max")
        group.rmdir()


@contextlib.contextmanager
def no_threads() -> Iterator[None]:
    """While inside: this process may not start one more thread (nor fork)."""
    with pids_cgroup("no-threads") as group:
        root = group.parent
        try:
            (group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as exc:
            pytest.skip(f"cannot join a pids cgroup here: {exc}")
        gate = threading.Event()
        try:
            (group / "pids.max").write_text((group / "pids.current").read_text())
            with contextlib.suppress(RuntimeError):  # take every idle worker: none can start
                for _ in range(10_000):
                    trio.lowlevel.start_thread_soon(gate.wait, lambda _: None)
            yield
        finally:
            gate.set()
            (group / "pids.max").write_text("max")
            (root / "cgroup.procs").write_text(str(os.getpid()))


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


async def test_a_daemon_started_where_no_thread_can_start_serves_and_stops(tmp_path: Path) -> None:
    port = unused_port()
    log = tmp_path / "daemon.log"
    with pids_cgroup("no-threads-daemon") as group, trio.fail_after(60):
        (group / "pids.max").write_text("1")  # the daemon's first thread, nothing more
        serve = [
            *(sys.executable, "-m", "cc_executor.executor", "serve", "--port", str(port)),
            *("--state-dir", str(tmp_path / "state"), "--log-format", "json"),
        ]
        with log.open("wb") as stderr:
            process = await trio.lowlevel.open_process(
                ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group / "cgroup.procs"), *serve],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            while True:
                with contextlib.suppress(OSError):
                    if (await http_get(port, "/healthz")).startswith(b"HTTP/1.1 200"):
                        break
                assert process.poll() is None, log.read_text()
                await trio.sleep(0.05)
            assert int((group / "pids.current").read_text()) == 1  # no thread was started
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0, log.read_text()
        finally:
            await stop_process(process)
    events = [orjson.loads(line)["event"] for line in log.read_bytes().splitlines()]
    assert "daemon.listening" in events  # logged without the writer thread
