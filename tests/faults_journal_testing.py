"""Helpers for the journal, recovery, procfs, stdin and idle fault tests (tests/faults/).

Real faults only: a small tmpfs mounted by the test (root), descriptors really exhausted under
a lowered RLIMIT_NOFILE, real bytes damaged in real journal files.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Container, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
from ccx_testing import WireClient

from cc_executor.supervision import Completed, CompletedEvent, Exited, Output, SequencedEvent
from cc_executor.supervision.journal import Journal, JournalConfig, Meta, Replayed, boot_id
from cc_executor.supervision.journal_codec import (
    MAGIC,
    MAGIC_V1,
    UNBOUND,
    Record,
    encode_entry,
    encode_meta,
    run_id_of,
    seed_of,
)
from cc_executor.supervision.journal_reader import Reader, read_record


def journal_meta(run_id: str) -> Meta:
    """A journal head for tests that write journals without a run behind them."""
    return Meta(
        run_id=run_id,
        pid=1,
        pgid=1,
        argv=("true",),
        started_wall=time.time(),
        boot_id=boot_id(),
        quota_bytes=1 << 30,
        quota_policy="block",
    )


def write_v1_journal(path: Path, meta: Meta, events: Sequence[SequencedEvent]) -> list[int]:
    """Write a journal of format v1 (as a daemon before v2 did: magic CCXJRNL1, CRCs not
    seeded) of `meta` and `events` at `path`; the offset of each event's record."""
    data, offsets = MAGIC_V1 + encode_meta(meta, UNBOUND), []
    for event in events:
        offsets.append(len(data))
        data += encode_entry(event, UNBOUND)
    path.write_bytes(data)
    return offsets


def journal_reader(path: Path, fd: int) -> Reader:
    """A reader of the journal file `path` (open as `fd`) of the current format: its records
    checked as bound to the run its name says."""
    return Reader(fd, (seed_of(run_id_of(str(path))),))


def record_offsets(path: Path) -> list[tuple[int, int]]:
    """(offset, seq) of every record after META."""
    found = []
    with path.open("rb") as f:
        reader = journal_reader(path, f.fileno())
        size = path.stat().st_size
        offset = len(MAGIC)
        while isinstance(record := read_record(reader, offset, size), Record):
            if record.seq:
                found.append((offset, record.seq))
            offset = record.end
    return found


MISSING_PID = 4_194_000  # above any pid this machine hands out (pid_max is 4194304 at most)


async def write_old_journals(
    directory: Path, run_ids: Sequence[str], *, lost: Container[str] = ()
) -> None:
    """Journals of runs an earlier daemon ran (under pids no process has), each holding one
    line of output, ``<run id>\\n``, and its completion (exited 0) unless the run is in `lost`
    (it died with that daemon)."""
    os.makedirs(directory, exist_ok=True)
    config = JournalConfig(fsync="never")
    for i, run_id in enumerate(run_ids):
        meta = Meta(
            run_id=run_id,
            pid=MISSING_PID + i,
            pgid=MISSING_PID + i,
            argv=("echo", run_id),
            started_wall=time.time() - 60 + i,
            boot_id=boot_id(),
            quota_bytes=1 << 20,
            quota_policy="block",
            owner="local",
        )
        journal = Journal.create(str(directory / f"{run_id}.journal"), meta, config)
        data = f"{run_id}\n".encode()
        await journal.deliver(Output(seq=1, stream="stdout", data=data))
        if run_id not in lost:
            done = Completed(Exited(0), stdout_bytes=len(data), stderr_bytes=0, duration=0.01)
            await journal.deliver(CompletedEvent(seq=2, completed=done))
        await journal.close()


def read_all(journal: Journal) -> list[Replayed]:
    """Every entry a cursor reads from the journal's start, as far as it is committed."""
    with journal.cursor(0) as cursor:
        entries: list[Replayed] = []
        while (entry := cursor.read_nowait()) is not None:
            entries.append(entry)
        return entries


MOUNT_HINT = "mount -t tmpfs -o size=2m tmpfs DIR (as root)"


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` for the block; unmounted after.  Needs root: the
    test is skipped with the command otherwise (CI runs as root, so there it runs)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip(f"needs root to mount a small tmpfs: {MOUNT_HINT}")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def fill(disk: Path) -> Path:
    """A file that takes every free byte of `disk` (down to single bytes)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (65536, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


@contextlib.contextmanager
def descriptors_exhausted(spare: int = 0) -> Iterator[list[int]]:
    """Open /dev/null until open() fails with EMFILE (under a soft RLIMIT_NOFILE lowered to
    a little above what is open now), leaving `spare` descriptors free; restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 64, hard))
    held: list[int] = []
    try:
        while True:
            try:
                held.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        for _ in range(min(spare, len(held))):
            os.close(held.pop())
        yield held
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def wait_notification(client: WireClient, method: str, run: str) -> dict[str, Any]:
    """Receive until a `method` notification about `run` arrives; return its params."""
    seen = 0
    while True:
        for message in client.notifications[seen:]:
            if message.get("method") == method and message["params"].get("run") == run:
                params: dict[str, Any] = message["params"]
                return params
        seen = len(client.notifications)
        await client.receive()


def flip_byte(path: Path, offset: int) -> None:
    """Invert one byte of a file in place."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


async def status_until(client: WireClient, run: str, check: Any, bound: float = 30) -> Any:
    """Poll ``status`` until check(status) holds (there is no event for what it reports)."""
    with trio.fail_after(bound):
        while True:
            status = await client.call("status", run=run)
            if check(status):
                return status
            await trio.sleep(0.05)
