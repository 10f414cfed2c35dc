"""A real full disk (a small tmpfs) drops a journal's output, not its notes.

Observed on main: a durable Claude session on a full disk under ``--journal-error-policy
cancel`` lost its ``claude.turn_ended`` with the output around it: a batch that could not be
written was dropped whole, notes included, so an attached client got a gap where the end of
its turn was.  Now output goes, and the notes (what clients are told: turns, permission
requests, state) stay queued; the completion takes the reserve with the notes that fit beside it.
"""

from __future__ import annotations

from pathlib import Path

import trio
from faults_journal_testing import fill, journal_meta, read_all, small_tmpfs

from cc_executor.supervision.events import Completed, CompletedEvent, Note, Output
from cc_executor.supervision.journal import Gap, Journal, JournalConfig, JournalFault
from cc_executor.supervision.outcome import Exited

BIG = b"x" * 16384  # more than the slack of the journal's last page: never fits a full disk


async def test_a_full_disk_drops_output_and_keeps_the_notes_with_the_completion(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk") as disk, trio.fail_after(30):
        config = JournalConfig(fsync="never", error_policy="cancel")
        journal = Journal.create(str(disk / "j"), journal_meta("full"), config)
        await journal.deliver(Output(1, "stdout", b"before\n"))
        await journal.flush()
        filler = fill(disk)
        await journal.deliver(Output(2, "stdout", BIG))
        ended = Note(3, "claude.turn_ended", b'{"turn":1,"result":"' + BIG + b'"}')
        await journal.deliver(ended)  # fails with the output before it
        state = Note(4, "claude.state", b'{"state":"idle"}')
        await journal.deliver(state)
        done = CompletedEvent(5, Completed(Exited(0), 7 + len(BIG), 0, 0.5))
        await journal.deliver(done)
        await journal.close()
        entries = read_all(journal)
        filler.unlink()
        reopened = Journal.open(journal.path, config)
        assert reopened is not None
        assert reopened.last_notes["claude.turn_ended"] == ended.data
    assert entries[0] == Output(1, "stdout", b"before\n")
    assert isinstance(entries[1], JournalFault)
    assert isinstance(entries[2], Gap)
    assert (entries[2].seq, entries[2].until_seq) == (2, 2)  # the output, and only it
    assert entries[3:] == [ended, state, done]  # from the file, not from memory
