"""A journal's head: made whole and locked before its name appears; read when it is damaged.

A head that cannot be read (META damaged, cut, missing; garbage) leaves `meta` None with
`head_damage` saying why, and the records after it are read as after any damage.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from faults_journal_testing import read_all

from cc_executor.supervision.events import Output
from cc_executor.supervision.journal import Gap, Journal, JournalConfig, JournalError, Meta, boot_id
from cc_executor.supervision.journal_codec import FRAME, MAGIC, encode_meta, seed_of

FAST = JournalConfig(fsync="never", batch_bytes=0)


def meta() -> Meta:
    return Meta("r1", 1, 1, ("true",), 1796000000.0, boot_id(), 1 << 30, "block", "local")


async def written(path: Path, count: int) -> Journal:
    journal = Journal.create(str(path), meta(), FAST)
    for seq in range(1, count + 1):
        await journal.deliver(Output(seq=seq, stream="stdout", data=b"%d\n" % seq))
    await journal.close()
    return journal


async def test_not_a_journal_is_opened_headless_and_left_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"hello world")
    journal = Journal.open(str(tmp_path / "x"), FAST)
    assert journal is not None
    assert journal.meta is None
    assert journal.head_damage is not None
    assert journal.head_damage.reason.startswith("not a cc-executor journal's magic")
    assert (journal.head_damage.offset, journal.head_damage.length) == (0, 11)
    assert journal.completed is None
    (gap,) = read_all(journal)  # what its bytes held is unknown, and said
    assert gap == Gap(1, "journal damaged", offset=0, length=11)
    await journal.close()
    assert (tmp_path / "x").read_bytes() == b"hello world"


async def test_only_a_regular_file_is_opened_never_through_a_symlink(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.journal")
    with pytest.raises(JournalError, match="not a regular file"):
        Journal.open(str(tmp_path / "fifo.journal"), FAST)
    (tmp_path / "target").write_bytes(b"")
    (tmp_path / "link.journal").symlink_to(tmp_path / "target")
    with pytest.raises(OSError, match="symbolic links"):
        Journal.open(str(tmp_path / "link.journal"), FAST)


async def test_a_new_journal_is_never_seen_unlocked_or_without_its_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another daemon reading the directory then would take it for a damaged journal (and its
    # run for a lost one).  Looked at when the lock is taken: the name must not be there yet.
    path = tmp_path / "r1.journal"
    seen: list[bool] = []
    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        seen.append(path.exists())
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    head = meta()
    journal = Journal.create(str(path), head, FAST)
    monkeypatch.undo()
    assert seen == [False]
    assert path.read_bytes() == MAGIC + encode_meta(head, seed_of("r1"))
    assert sorted(os.listdir(tmp_path)) == ["r1.journal", "r1.journal.reserve"]
    assert Journal.open(str(path), FAST) is None  # locked by its writer
    await journal.close()
    with pytest.raises(FileExistsError):
        Journal.create(str(path), meta(), FAST)
    assert Journal.open(str(path), FAST) is not None  # the existing one untouched


async def test_damage_over_the_meta_and_first_records_lists_the_events_it_cost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r1.journal"
    await written(path, 4)
    data = bytearray(path.read_bytes())
    head_end = len(MAGIC) + FRAME.size + FRAME.unpack_from(data, len(MAGIC))[0]
    record = (len(data) - head_end) // 4  # four records of the same size
    data[len(MAGIC) : head_end + 2 * record] = bytes(head_end + 2 * record - len(MAGIC))
    path.write_bytes(bytes(data))
    journal = Journal.open(str(path), FAST)
    assert journal is not None
    assert journal.meta is None
    assert journal.head_damage is not None
    assert (journal.head_damage.offset, journal.head_damage.length) == (
        len(MAGIC),
        head_end + 2 * record - len(MAGIC),
    )
    assert [(d.first_seq, d.last_seq) for d in journal.damaged] == [(1, 2)]
    assert (journal.last_seq, journal.stdout_bytes) == (4, 4)
    gap, *rest = read_all(journal)
    assert isinstance(gap, Gap)
    assert (gap.seq, gap.until_seq, gap.reason) == (1, 2, "journal damaged")
    assert rest == [Output(3, "stdout", b"3\n"), Output(4, "stdout", b"4\n")]
    await journal.close()


async def test_a_damaged_magic_before_a_whole_meta_costs_nothing(tmp_path: Path) -> None:
    path = tmp_path / "r1.journal"
    await written(path, 2)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    journal = Journal.open(str(path), FAST)
    assert journal is not None
    assert journal.meta == meta()
    assert journal.head_damage is None
    assert read_all(journal) == [Output(1, "stdout", b"1\n"), Output(2, "stdout", b"2\n")]
    await journal.close()


async def test_a_journal_of_another_format_version_is_refused_and_left_as_it_is(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r1.journal"
    await written(path, 1)
    data = path.read_bytes()
    path.write_bytes(MAGIC[:-1] + b"9" + data[len(MAGIC) :])
    with pytest.raises(JournalError, match="a journal of format CCXJRNL9"):
        Journal.open(str(path), FAST)
    assert path.read_bytes() == MAGIC[:-1] + b"9" + data[len(MAGIC) :]
