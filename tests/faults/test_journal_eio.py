"""Journal writes that fail with EIO, and what readers see (the journal alone, no daemon).

EIO cannot be produced on demand here, so these tests patch ``os.writev``/``os.write`` for
the journal's descriptor only.  The real fault they stand for: a failing disk (or a
network file system that lost its server) returning EIO from write(2).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from faults_journal_testing import journal_meta

from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Output,
    RunState,
    SequencedEvent,
    StateEvent,
)
from cc_executor.supervision.journal import (
    Gap,
    Journal,
    JournalConfig,
    JournalFault,
    Replayed,
)
from cc_executor.supervision.outcome import Exited


def paused(seq: int) -> SequencedEvent:
    return StateEvent(seq=seq, state=RunState.PAUSED)


def output(seq: int) -> Output:
    return Output(seq=seq, stream="stdout", data=b"line %d\n" % seq)


DONE = CompletedEvent(seq=4, completed=Completed(Exited(0), 21, 0, 0.5))


class FailingDisk:
    """Makes writes to one descriptor fail with EIO while `failing` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fd = -1
        self.failing = False
        self.attempts = 0
        for name in ("write", "writev"):
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(real))

    def _wrap(self, real: Callable[..., int]) -> Callable[..., int]:
        def write(fd: int, data: Any) -> int:
            if fd == self.fd and self.failing:
                self.attempts += 1
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real(fd, data)

        return write


def blocked(journal: Journal) -> bool:
    return journal.blocked


def unresolved(journal: Journal) -> JournalFault | None:
    """The journal's current fault (a function: mypy would keep an earlier narrowing)."""
    return journal.fault


def read_all(journal: Journal) -> list[Replayed]:
    with journal.cursor(0) as cursor:
        entries = []
        while (entry := cursor.read_nowait()) is not None:
            entries.append(entry)
        assert cursor.at_end()
        return entries


async def test_block_policy_retries_until_the_disk_heals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    disk = FailingDisk(monkeypatch)
    journal = Journal.create(str(tmp_path / "j"), journal_meta("eio"), JournalConfig(fsync="never"))
    disk.fd = journal._fd or -1
    await journal.deliver(output(1))
    await journal.flush()
    disk.failing = True
    seen: list[Replayed] = []

    async def follow() -> None:
        with journal.cursor(0) as cursor:
            while (entry := await cursor.read()) is not None:
                seen.append(entry)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            nursery.start_soon(journal.deliver, paused(2))
            await trio.testing.wait_all_tasks_blocked()
            while disk.attempts < 3:  # noqa: ASYNC110 - retried with a backoff, not dropped
                await trio.sleep(journal.config.retry_max)
            assert journal.blocked
            assert journal.fault is not None
            assert journal.fault.seq == 2
            assert "Input/output error" in journal.fault.reason
            assert JournalFault(2, journal.fault.reason, "block") in seen
            disk.failing = False  # the disk heals: the retry succeeds, nothing was lost
            while blocked(journal):  # noqa: ASYNC110 - the next retry succeeds
                await trio.sleep(journal.config.retry_max)
            assert unresolved(journal) is None
            await journal.deliver(output(3))
            await journal.deliver(DONE)
            await journal.close()
    assert [e for e in seen if not isinstance(e, JournalFault)] == [
        output(1),
        paused(2),
        output(3),
        DONE,
    ]
    assert isinstance(seen[1], JournalFault)  # announced after what was recorded before it
    assert seen[1].seq == 2


async def test_cancel_policy_stops_recording_and_the_completion_is_kept_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FailingDisk(monkeypatch)
    config = JournalConfig(fsync="never", error_policy="cancel")
    journal = Journal.create(str(tmp_path / "j"), journal_meta("eio"), config)
    disk.fd = journal._fd or -1
    with trio.fail_after(10):
        await journal.deliver(output(1))
        await journal.flush()
        disk.failing = True
        await journal.deliver(output(2))
        await journal.flush()  # fails at once under "cancel": no retry
        fault = await journal.wait_faulted()
        assert fault.seq == 2
        assert fault.policy == "cancel"
        await journal.deliver(output(3))  # not recorded any more
        await journal.deliver(DONE)  # cannot be written either (EIO even with the reserve)
        await journal.close()
    assert journal.completed == DONE
    assert journal.last_seq == DONE.seq
    entries = read_all(journal)
    assert entries[0] == output(1)
    assert entries[1] == fault
    assert isinstance(entries[2], Gap)
    assert (entries[2].seq, entries[2].until_seq) == (2, 3)
    assert entries[2].reason.startswith("not recorded")
    assert entries[3] == DONE  # from memory: the file never got it
    assert len(entries) == 4
