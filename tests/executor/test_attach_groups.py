"""An attachment sends what its cursor has ready as one write: groups of output in order, exact
seqs and bytes, whether it keeps up with the journal, lags on disk and catches up, or detaches
while a group is on its way."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest
import trio
from ccx_testing import Served, make_config, start_daemon
from durable_testing import drop, open_durable_client, wait_state

from cc_executor.executor.runs.attach import Attachment, TailSettings, tail
from cc_executor.executor.runs.durable import DurableRun
from cc_executor.protocol.connection import ServerConnection
from cc_executor.protocol.notices import Notice, RunCompleted, RunGap, RunJournalError, RunOutput
from cc_executor.supervision.events import Completed, CompletedEvent, Output
from cc_executor.supervision.journal import Journal, JournalConfig, Meta, boot_id
from cc_executor.supervision.outcome import Exited

GROUP_BYTES = 256 * 1024  # the pump's default max_chunk, as the daemon sets it
SETTINGS = TailSettings(
    retry_initial=0.01, retry_bound=1.0, claude_max_line=None, group_bytes=GROUP_BYTES
)
CHUNK = 3000  # bytes of each output event


@attrs.define
class Recorder:
    """A follower that keeps every write it is asked for (one list of notices each)."""

    conn: ServerConnection = attrs.Factory(ServerConnection)
    closed: bool = False
    writes: list[list[Notice]] = attrs.Factory(list)

    async def send_notice(self, notice: Notice) -> None:
        await self.send_notices([notice])

    async def send_notices(self, notices: Sequence[Notice]) -> None:
        await trio.lowlevel.checkpoint()
        self.writes.append(list(notices))

    def outputs(self) -> list[RunOutput]:
        return [n for write in self.writes for n in write if isinstance(n, RunOutput)]


def journal_at(path: Path, batch_bytes: int) -> Journal:
    meta = Meta(
        run_id="r1",
        pid=4242,
        pgid=4242,
        argv=("yes",),
        started_wall=time.time(),
        boot_id=boot_id(),
        quota_bytes=1 << 30,
        quota_policy="block",
    )
    return Journal.create(str(path), meta, JournalConfig(fsync="never", batch_bytes=batch_bytes))


def output(seq: int) -> Output:
    return Output(seq=seq, stream="stdout", data=bytes([seq % 251]) * CHUNK)


def completion(seq: int) -> CompletedEvent:
    done = Completed(outcome=Exited(0), stdout_bytes=0, stderr_bytes=0, duration=1.0)
    return CompletedEvent(seq=seq, completed=done)


def check_exact(recorder: Recorder, count: int) -> None:
    """Every output once, in order, then the completion last; no write holds more output
    than a group may (GROUP_BYTES, or one bigger record)."""
    outputs = recorder.outputs()
    assert [o.seq for o in outputs] == list(range(1, count + 1))
    expected = b"".join(output(seq).data for seq in range(1, count + 1))
    assert b"".join(o.data for o in outputs) == expected
    last = recorder.writes[-1][-1]
    assert isinstance(last, RunCompleted)
    assert last.seq == count + 1
    for write in recorder.writes:
        assert sum(len(n.data) for n in write if isinstance(n, RunOutput)) <= GROUP_BYTES


async def test_a_replay_sends_the_output_ready_in_groups(tmp_path: Path) -> None:
    count = 300
    journal = journal_at(tmp_path / "j", 512 * 1024)
    for seq in range(1, count + 1):
        await journal.deliver(output(seq))
    await journal.deliver(completion(count + 1))
    await journal.close()
    recorder = Recorder()
    attachment = Attachment(DurableRun(journal), 0)
    with trio.fail_after(30):
        await tail(recorder, attachment, SETTINGS)
    check_exact(recorder, count)
    # A write per group of GROUP_BYTES (whole records), not one per event.
    per_group = GROUP_BYTES // CHUNK
    assert len(recorder.writes) <= -(-count // per_group) + 1
    assert attachment.sent_seq == count + 1
    assert attachment.completed


async def test_a_replay_from_any_seq_starts_right_after_it(tmp_path: Path) -> None:
    count = 200
    journal = journal_at(tmp_path / "j", 64 * 1024)
    for seq in range(1, count + 1):
        await journal.deliver(output(seq))
    await journal.deliver(completion(count + 1))
    await journal.close()
    for from_seq in (0, 1, 57, count - 1, count):
        recorder = Recorder()
        with trio.fail_after(30):
            await tail(recorder, Attachment(DurableRun(journal), from_seq), SETTINGS)
        assert [o.seq for o in recorder.outputs()] == list(range(from_seq + 1, count + 1))
        last = recorder.writes[-1][-1]
        assert isinstance(last, RunCompleted)
        assert last.seq == count + 1


@pytest.mark.parametrize("where", ["data", "length"])
async def test_a_replay_in_groups_steps_over_damage_with_a_gap(tmp_path: Path, where: str) -> None:
    count = 120
    path = tmp_path / "j"
    journal = journal_at(path, 64 * 1024)
    offsets = []
    for seq in range(1, count + 1):
        offsets.append(journal.committed + journal._batch.size)
        await journal.deliver(output(seq))
    await journal.deliver(completion(count + 1))
    await journal.close()
    damaged = 60  # this record's CRC (or its frame's length) no longer holds
    raw = bytearray(path.read_bytes())
    at = offsets[damaged - 1] + (100 if where == "data" else 0)
    raw[at : at + 4] = b"\xff\xff\xff\x7f"
    path.write_bytes(bytes(raw))
    reopened = Journal.open(str(path), JournalConfig(fsync="never"))
    assert reopened is not None
    assert reopened.damaged
    recorder = Recorder()
    with trio.fail_after(30):
        await tail(recorder, Attachment(DurableRun(reopened), 0), SETTINGS)
    seqs = [o.seq for o in recorder.outputs()]
    assert seqs == [s for s in range(1, count + 1) if s != damaged]
    for o in recorder.outputs():
        assert o.data == output(o.seq).data
    gaps = [n for write in recorder.writes for n in write if isinstance(n, RunGap)]
    assert [g.seq for g in gaps] == [damaged]
    last = recorder.writes[-1][-1]
    assert isinstance(last, RunCompleted)


async def test_a_follower_that_keeps_up_gets_each_batch_in_one_write(tmp_path: Path) -> None:
    count = 400
    journal = journal_at(tmp_path / "j", 64 * 1024)
    recorder = Recorder()
    attachment = Attachment(DurableRun(journal), 0)

    async def record() -> None:
        for seq in range(1, count + 1):
            await journal.deliver(output(seq))
            if seq % 50 == 0:
                await journal.flush()  # output pauses: the pump's idle hook
            await trio.lowlevel.checkpoint()
        await journal.deliver(completion(count + 1))
        await journal.close()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tail, recorder, attachment, SETTINGS)
            nursery.start_soon(record)
    check_exact(recorder, count)
    # Woken once a batch is written, it sends the whole batch (from memory) at once.
    assert max(len(write) for write in recorder.writes) > 1
    assert len(recorder.writes) < count // 2


@pytest.fixture
async def served(nursery: trio.Nursery, tmp_path: Path) -> Served:
    return await start_daemon(nursery, make_config(state_dir=str(tmp_path / "state")))


def numbers(first: int, last: int) -> bytes:
    return "".join(f"{i}\n" for i in range(first, last + 1)).encode()


async def test_a_follower_lags_on_disk_catches_up_and_follows_live(
    served: Served, tmp_path: Path
) -> None:
    marker = tmp_path / "go"
    # 15 MB the client does not read at first (more than the sockets hold: the tail lags on
    # disk), then the run waits for the marker and writes more while the client keeps up.
    script = f"seq 1 2000000; while [ ! -e {marker} ]; do sleep 0.01; done; seq 2000001 2100000"
    first = numbers(1, 2_000_000)
    with trio.fail_after(120):
        async with (
            open_durable_client(served.url) as follower,
            open_durable_client(served.url) as watcher,
        ):
            result = await follower.call("execute", argv=["sh", "-c", script], durable=True)
            run = result["run"]
            while True:  # the follower reads nothing meanwhile
                status = await watcher.call("status", run=run)
                if status["stdout_bytes"] == len(first):
                    break
                await trio.sleep(0.02)
            await follower.wait_output(run, b"\n2000000\n")
            assert bytes(follower.runs[run].stdout) == first
            marker.touch()
            record = await follower.wait_completed(run)
    assert record.completed is not None
    assert record.completed["exit_code"] == 0
    assert bytes(record.stdout) == numbers(1, 2_100_000)


@pytest.mark.parametrize("live", [False, True], ids=["finished", "live"])
async def test_a_detach_while_groups_are_sent_loses_and_repeats_nothing(
    served: Served, tmp_path: Path, live: bool
) -> None:
    marker = tmp_path / "go"
    script = f"seq 1 1000000; while [ ! -e {marker} ]; do sleep 0.01; done"
    whole = numbers(1, 1_000_000)
    collected = bytearray()
    with trio.fail_after(120):
        async with open_durable_client(served.url) as starter:
            run = (await starter.call("execute", argv=["sh", "-c", script], durable=True))["run"]
            await drop(starter)
        async with open_durable_client(served.url) as client:
            if not live:
                marker.touch()
                await wait_state(client, run, "completed")
            last = 0
            for _ in range(5):  # detach a few events in, while the tail is sending
                await client.attach(run, last)
                while client.runs[run].last_seq < last + 3:
                    await client.receive()
                detached = await client.call("detach", run=run)
                record = client.runs[run]
                assert detached["last_sent_seq"] == record.last_seq
                await client.call("status")  # nothing of the run follows the reply
                assert client.runs[run].last_seq == record.last_seq
                collected += record.stdout
                last = record.last_seq
                if record.completed is not None:  # the whole replay came before the detach
                    break
            if record.completed is None:
                marker.touch()
                await client.attach(run, last)
                record = await client.wait_completed(run)
                collected += record.stdout
    assert bytes(collected) == whole


async def test_a_journal_that_fails_to_read_is_said_after_what_was_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of the journal that fails part way through a replay (EIO from pread(2): a failing
    disk, which cannot be produced here, so pread is patched for this file only) ends the follow
    with a `process.journal_error` naming it, right after the last event sent; nothing raises."""
    count = 300  # 900 KB: a few groups, the failing read in the second
    path = tmp_path / "j"
    journal = journal_at(path, 64 * 1024)
    for seq in range(1, count + 1):
        await journal.deliver(output(seq))
    await journal.deliver(completion(count + 1))
    await journal.close()
    real_pread = os.pread

    def failing_pread(fd: int, length: int, offset: int) -> bytes:
        if offset > 400_000 and os.readlink(f"/proc/self/fd/{fd}") == str(path):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_pread(fd, length, offset)

    monkeypatch.setattr(os, "pread", failing_pread)
    recorder = Recorder()
    attachment = Attachment(DurableRun(journal), 0)
    with trio.fail_after(30):
        await tail(recorder, attachment, SETTINGS)
    sent = [o.seq for o in recorder.outputs()]
    assert sent == list(range(1, len(sent) + 1))
    assert 0 < len(sent) < count
    last = recorder.writes[-1][-1]
    assert isinstance(last, RunJournalError)
    assert last.seq == sent[-1] + 1
    assert "cannot read the journal" in last.reason
    assert "Input/output error" in last.reason
    assert not attachment.completed
    assert attachment.sent_seq == sent[-1]
    assert attachment.done.is_set()


async def test_a_journal_that_is_no_regular_file_is_said_at_once_not_after_the_retries(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Only a shortage of descriptors is worth waiting for: a FIFO put in the journal's place
    (EINVAL, "not a regular file") was retried for the whole bound (2.5 s with the daemon's
    settings), the attaching client waiting all along for the same error."""
    path = tmp_path / "j"
    journal = journal_at(path, 64 * 1024)
    await journal.deliver(output(1))
    await journal.deliver(completion(2))
    await journal.close()
    path.unlink()
    os.mkfifo(path)
    recorder = Recorder()
    settings = attrs.evolve(SETTINGS, retry_bound=60.0)
    started = trio.current_time()
    with trio.fail_after(120):
        await tail(recorder, Attachment(DurableRun(journal), 0), settings)
    assert trio.current_time() == started  # no retry slept (the clock jumps only for sleeps)
    (notice,) = recorder.writes[-1]
    assert isinstance(notice, RunJournalError)
    assert "not a regular file" in notice.reason
