"""The run journal: a durable run's events in an append-only file of checked records.

Theory of operation
-------------------
A durable run's pump delivers into `Journal.deliver` (the journal is the pump's sink, as the
WebSocket is for other runs).  Every numbered event becomes one record, appended with a single
write(2) after the file magic::

    u32 body length | u32 CRC-32 of body | body = u8 kind | u64 seq | payload

Kinds: META (seq 0, the run's facts: id, pid, pgid, argv, start time, boot id, owner), OUTPUT
(stream, bytes), STATE (paused/running), COMPLETED (the outcome and byte counts), GAP
(recording stopped at this seq: the quota was reached in "gap" mode) and REMOVED (retention
dropped seqs first..last).  Payload fields are length-prefixed bytes; there is no JSON here.

Crash safety: only the last record can be torn (records are only appended).  `Journal.open`
scans from the start and truncates at the first record that is short or fails its CRC, so a
torn tail is cut, never misread.  `committed` is the size up to the last whole record; readers
never read beyond it, so a live tail never sees half a record.

Readers (`Cursor`) open their own descriptor and wait on `wait_appended`, an event swapped on
every append: a slow reader only lags on disk, holding no memory and slowing nobody.

Quota: output records may fill the file up to `quota_bytes`.  At the quota, policy "block"
makes `deliver` wait (the pump, channel, runner and pipe back up, and the child blocks in
write) until `unblock()` (called when the run is ending), after which output is not recorded
any more; policy "gap" appends one GAP record and drops output from then on.  State and
completion records are always written.

The live writer holds an exclusive flock on its file: a journal whose lock can be taken
belongs to no live daemon (the lock dies with the process, even on SIGKILL).
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from typing import Literal

import attrs
import trio

from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Output,
    RunState,
    SequencedEvent,
    StateEvent,
    Stream,
)
from cc_executor.supervision.outcome import (
    Cancelled,
    Exited,
    Lost,
    Outcome,
    Rung,
    Signalled,
    SpawnFailed,
    TimedOut,
)

MAGIC = b"CCXJRNL1"
_FRAME = struct.Struct("<II")  # body length, crc32
_HEAD = struct.Struct("<BQ")  # kind, seq
_LEN16 = struct.Struct("<H")
_LEN32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
MAX_RECORD = 64 * 1024 * 1024  # a length beyond this can only be a torn or corrupt header

K_META, K_OUTPUT, K_STATE, K_COMPLETED, K_GAP, K_REMOVED = range(6)
_STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")

QuotaPolicy = Literal["block", "gap"]
FsyncPolicy = Literal["never", "completion", "always"]


class JournalError(Exception):
    """A file is not a journal (bad magic or no META record)."""


@attrs.frozen
class JournalConfig:
    """How much a run may journal, what happens then, and when to fsync.

    Attributes:
        quota_bytes: largest journal file, in bytes, that output may fill.
        quota_policy: "block" (the child waits) or "gap" (stop recording, with a GAP record).
        fsync: "never", "completion" (state changes, completion, close) or "always".
    """

    quota_bytes: int = 1024 * 1024 * 1024
    quota_policy: QuotaPolicy = "block"
    fsync: FsyncPolicy = "completion"


@attrs.frozen
class Meta:
    """What a journal records about its run before any event."""

    run_id: str
    pid: int
    pgid: int
    argv: tuple[str, ...]
    started_wall: float  # time.time() at start
    boot_id: str  # processes of the run can only be alive under the same boot
    quota_bytes: int
    quota_policy: QuotaPolicy
    # Who started the run (the client identity).  Added after the first journals: a META
    # without it decodes as None, and readers that do not know it ignore the field.
    owner: str | None = None


@attrs.frozen
class Gap:
    """Output from `seq` on was not recorded (quota reached); `reason` says why."""

    seq: int
    reason: str


@attrs.frozen
class Removed:
    """Retention removed the events `first`..`last` (inclusive)."""

    first: int
    last: int


Entry = Output | StateEvent | CompletedEvent | Gap | Removed
Replayed = Output | StateEvent | CompletedEvent | Gap  # what a cursor yields


# -- encoding ------------------------------------------------------------------------------


def _pack_fields(fields: dict[str, bytes]) -> bytes:
    parts = [_LEN16.pack(len(fields))]
    for key, value in fields.items():
        raw_key = key.encode()
        parts += [_LEN16.pack(len(raw_key)), raw_key, _LEN32.pack(len(value)), value]
    return b"".join(parts)


def _unpack_fields(raw: bytes) -> dict[str, bytes]:
    (count,) = _LEN16.unpack_from(raw, 0)
    offset = _LEN16.size
    fields: dict[str, bytes] = {}
    for _ in range(count):
        (klen,) = _LEN16.unpack_from(raw, offset)
        offset += _LEN16.size
        key = raw[offset : offset + klen].decode()
        offset += klen
        (vlen,) = _LEN32.unpack_from(raw, offset)
        offset += _LEN32.size
        fields[key] = raw[offset : offset + vlen]
        offset += vlen
    return fields


def _pack_list(items: tuple[str, ...]) -> bytes:
    return b"".join(_LEN32.pack(len(b)) + b for b in (item.encode() for item in items))


def _unpack_list(raw: bytes) -> tuple[str, ...]:
    items: list[str] = []
    offset = 0
    while offset < len(raw):
        (n,) = _LEN32.unpack_from(raw, offset)
        offset += _LEN32.size
        items.append(raw[offset : offset + n].decode())
        offset += n
    return tuple(items)


def _exit_text(exit: Exited | Signalled) -> bytes:
    return (
        f"exited:{exit.code}".encode()
        if isinstance(exit, Exited)
        else f"sig:{exit.signal}".encode()
    )


def _exit_from(text: bytes) -> Exited | Signalled:
    kind, _, value = text.decode().partition(":")
    return Exited(int(value)) if kind == "exited" else Signalled(int(value))


def _outcome_fields(outcome: Outcome) -> dict[str, bytes]:
    match outcome:
        case Exited(code=code):
            return {"outcome": b"exited", "code": str(code).encode()}
        case Signalled(signal=sig):
            return {"outcome": b"signalled", "signal": str(sig).encode()}
        case Cancelled(reason=reason, rung=rung, exit=exit):
            return {
                "outcome": b"cancelled",
                "reason": reason.encode(),
                "rung": rung.value.encode(),
                "exit": _exit_text(exit),
            }
        case TimedOut(kind=kind, rung=rung, exit=exit):
            return {
                "outcome": b"timed_out",
                "kind": kind.encode(),
                "rung": rung.value.encode(),
                "exit": _exit_text(exit),
            }
        case SpawnFailed(message=message):
            return {"outcome": b"spawn_failed", "reason": message.encode()}
        case Lost(reason=reason):
            return {"outcome": b"lost", "reason": reason.encode()}


def _outcome_from(fields: dict[str, bytes]) -> Outcome:
    kind = fields["outcome"].decode()
    if kind == "exited":
        return Exited(int(fields["code"]))
    if kind == "signalled":
        return Signalled(int(fields["signal"]))
    if kind == "cancelled":
        return Cancelled(
            reason=fields["reason"].decode(),
            rung=Rung(fields["rung"].decode()),
            exit=_exit_from(fields["exit"]),
        )
    if kind == "timed_out":
        timeout_kind = fields["kind"].decode()
        assert timeout_kind in ("idle", "absolute")
        return TimedOut(
            kind="idle" if timeout_kind == "idle" else "absolute",
            rung=Rung(fields["rung"].decode()),
            exit=_exit_from(fields["exit"]),
        )
    if kind == "spawn_failed":
        return SpawnFailed(fields["reason"].decode())
    return Lost(fields["reason"].decode())


def encode_meta(meta: Meta) -> bytes:
    """The META record of a journal."""
    fields = {
        "run_id": meta.run_id.encode(),
        "pid": str(meta.pid).encode(),
        "pgid": str(meta.pgid).encode(),
        "argv": _pack_list(meta.argv),
        "started_wall": repr(meta.started_wall).encode(),
        "boot_id": meta.boot_id.encode(),
        "quota_bytes": str(meta.quota_bytes).encode(),
        "quota_policy": meta.quota_policy.encode(),
    }
    if meta.owner is not None:
        fields["owner"] = meta.owner.encode()
    return _record(K_META, 0, _pack_fields(fields))


def _decode_meta(payload: bytes) -> Meta:
    fields = _unpack_fields(payload)
    policy = fields["quota_policy"].decode()
    return Meta(
        run_id=fields["run_id"].decode(),
        pid=int(fields["pid"]),
        pgid=int(fields["pgid"]),
        argv=_unpack_list(fields["argv"]),
        started_wall=float(fields["started_wall"]),
        boot_id=fields["boot_id"].decode(),
        quota_bytes=int(fields["quota_bytes"]),
        quota_policy="gap" if policy == "gap" else "block",
        owner=fields["owner"].decode() if "owner" in fields else None,
    )


def _record(kind: int, seq: int, payload: bytes) -> bytes:
    body = _HEAD.pack(kind, seq) + payload
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def encode_entry(entry: Entry) -> bytes:
    """One record, framed and checksummed."""
    match entry:
        case Output(seq=seq, stream=stream, data=data):
            return _record(K_OUTPUT, seq, bytes([_STREAMS.index(stream)]) + data)
        case StateEvent(seq=seq, state=state):
            return _record(K_STATE, seq, state.value.encode())
        case CompletedEvent(seq=seq, completed=completed):
            fields = _outcome_fields(completed.outcome)
            fields["stdout_bytes"] = str(completed.stdout_bytes).encode()
            fields["stderr_bytes"] = str(completed.stderr_bytes).encode()
            fields["duration"] = repr(completed.duration).encode()
            return _record(K_COMPLETED, seq, _pack_fields(fields))
        case Gap(seq=seq, reason=reason):
            return _record(K_GAP, seq, reason.encode())
        case Removed(first=first, last=last):
            return _record(K_REMOVED, first, _U64.pack(last))


def _decode_entry(kind: int, seq: int, payload: bytes) -> Entry:
    if kind == K_OUTPUT:
        return Output(seq=seq, stream=_STREAMS[payload[0]], data=payload[1:])
    if kind == K_STATE:
        return StateEvent(seq=seq, state=RunState(payload.decode()))
    if kind == K_COMPLETED:
        fields = _unpack_fields(payload)
        completed = Completed(
            outcome=_outcome_from(fields),
            stdout_bytes=int(fields["stdout_bytes"]),
            stderr_bytes=int(fields["stderr_bytes"]),
            duration=float(fields["duration"]),
        )
        return CompletedEvent(seq=seq, completed=completed)
    if kind == K_GAP:
        return Gap(seq=seq, reason=payload.decode())
    if kind == K_REMOVED:
        return Removed(first=seq, last=_U64.unpack(payload)[0])
    raise JournalError(f"unknown record kind {kind}")


def read_record(fd: int, offset: int, limit: int) -> tuple[int, int, bytes, int] | None:
    """(kind, seq, payload, next offset) of the whole, valid record at `offset`, or None.

    None means: no whole record ends at or before `limit`, or the record fails its checks.
    """
    if offset + _FRAME.size > limit:
        return None
    frame = os.pread(fd, _FRAME.size, offset)
    if len(frame) < _FRAME.size:
        return None
    length, crc = _FRAME.unpack(frame)
    end = offset + _FRAME.size + length
    if length < _HEAD.size or length > MAX_RECORD or end > limit:
        return None
    body = os.pread(fd, length, offset + _FRAME.size)
    if len(body) < length or zlib.crc32(body) != crc:
        return None
    kind, seq = _HEAD.unpack_from(body)
    return kind, seq, body[_HEAD.size :], end


# -- the journal ---------------------------------------------------------------------------


class Journal:
    """One run's journal file, and what is known about it in memory.

    Build it with `create` (a new live run: `deliver` is its pump's sink) or `open` (an
    existing file, recovered: a torn tail is truncated).
    """

    def __init__(self, path: str, meta: Meta, config: JournalConfig) -> None:
        self.path = path
        self.meta = meta
        self.config = config
        self.committed = 0  # bytes up to the end of the last whole record
        self.last_seq = 0
        self.stdout_bytes = 0  # as recorded (output after a gap is not counted)
        self.stderr_bytes = 0
        self.completed: CompletedEvent | None = None
        self.gap: Gap | None = None
        self.removed: Removed | None = None
        self.blocked = False  # deliver is waiting for room (quota, policy "block")
        self.truncated_bytes = 0  # torn tail cut off by open()
        self._fd: int | None = None  # the writer's descriptor, while live
        self._appended = trio.Event()
        self._unblocked = trio.Event()
        self.finished = True  # no more appends will come

    # -- building ----------------------------------------------------------------------

    @classmethod
    def create(cls, path: str, meta: Meta, config: JournalConfig) -> Journal:
        """A new journal for a live run, locked by this process until `close`."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            head = MAGIC + encode_meta(meta)
            os.write(fd, head)
        except BaseException:
            os.close(fd)
            raise
        journal = cls(path, meta, config)
        journal._fd = fd
        journal.committed = len(head)
        journal.finished = False
        return journal

    @classmethod
    def open(cls, path: str, config: JournalConfig) -> Journal | None:
        """Read an existing journal, truncating a torn tail; None if a live daemon holds it.

        A journal without a completion is returned still locked by this process (`finished`
        False, no writes accepted but `append_completion`) so nobody else recovers it too.

        Raises:
            JournalError: the file is not a journal.
        """
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            journal = cls._scan(fd, path, config)
        except BaseException:
            os.close(fd)
            raise
        if journal.completed is None:
            os.lseek(fd, journal.committed, os.SEEK_SET)  # appends go after the last record
            journal._fd = fd
        else:
            os.close(fd)
        return journal

    @classmethod
    def _scan(cls, fd: int, path: str, config: JournalConfig) -> Journal:
        size = os.fstat(fd).st_size
        if os.pread(fd, len(MAGIC), 0) != MAGIC:
            raise JournalError(f"{path}: not a cc-executor journal")
        first = read_record(fd, len(MAGIC), size)
        if first is None or first[0] != K_META:
            raise JournalError(f"{path}: no META record")
        journal = cls(path, _decode_meta(first[2]), config)
        offset = first[3]
        while (record := read_record(fd, offset, size)) is not None:
            kind, seq, payload, offset = record
            journal._note(_decode_entry(kind, seq, payload))
        journal.committed = offset
        if offset < size:  # a torn or corrupt tail: cut it, never read it
            journal.truncated_bytes = size - offset
            os.ftruncate(fd, offset)
            os.fsync(fd)
        return journal

    def _note(self, entry: Entry) -> None:
        match entry:
            case Output(seq=seq, stream=stream, data=data):
                self.last_seq = seq
                if stream == "stdout":
                    self.stdout_bytes += len(data)
                else:
                    self.stderr_bytes += len(data)
            case StateEvent(seq=seq):
                self.last_seq = seq
            case CompletedEvent(seq=seq):
                self.last_seq = seq
                self.completed = entry
            case Gap():
                self.gap = entry
            case Removed():
                self.removed = entry

    # -- writing -------------------------------------------------------------------------

    async def deliver(self, event: SequencedEvent) -> None:
        """The pump's sink: append one event (see the module docstring for the quota)."""
        if isinstance(event, Output):
            if self.gap is not None:
                return
            record = encode_entry(event)
            if self.committed + len(record) > self.meta.quota_bytes:
                if self.meta.quota_policy == "block":
                    self.blocked = True
                    try:
                        await self._unblocked.wait()
                    finally:
                        self.blocked = False
                    reason = "journal quota reached; the run is ending"
                else:
                    reason = "journal quota reached"
                await self._append(encode_entry(Gap(event.seq, reason)), Gap(event.seq, reason))
                return
            await self._append(record, event)
            return
        await self._append(encode_entry(event), event)

    def unblock(self) -> None:
        """Stop waiting for room: from now on, output over the quota is dropped (a GAP)."""
        self._unblocked.set()

    async def append_completion(self, event: CompletedEvent) -> None:
        """Record the completion of a run found without one (see `open`), then close."""
        await self._append(encode_entry(event), event)
        await self.close()

    async def _append(self, record: bytes, entry: Entry) -> None:
        assert self._fd is not None, "journal is not open for writing"
        written = os.write(self._fd, record)
        if written != len(record):  # a regular file only writes short when the disk is full
            os.ftruncate(self._fd, self.committed)
            raise OSError(f"short write to {self.path} ({written} of {len(record)} bytes)")
        self.committed += len(record)
        self._note(entry)
        if self.config.fsync == "always" or (
            self.config.fsync == "completion" and not isinstance(entry, Output)
        ):
            await trio.to_thread.run_sync(os.fsync, self._fd)
        self._wake()

    async def close(self) -> None:
        """No more appends: release the file and wake every reader."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if self.config.fsync != "never":
                    await trio.to_thread.run_sync(os.fsync, fd)
            finally:
                os.close(fd)
        self.finished = True
        self._wake()

    def _wake(self) -> None:
        self._appended.set()
        self._appended = trio.Event()

    async def wait_appended(self, seen: int) -> None:
        """Return once the journal holds more than `seen` bytes, or has finished."""
        while self.committed <= seen and not self.finished:
            await self._appended.wait()

    # -- reading -------------------------------------------------------------------------

    def cursor(self, from_seq: int) -> Cursor:
        """A reader of every entry after `from_seq` (the caller closes it)."""
        return Cursor(self, from_seq)

    @property
    def size(self) -> int:
        return self.committed


class Cursor:
    """Reads a journal's entries after `from_seq`, then follows it live.

    A GAP that covers seqs after `from_seq` is yielded once, its seq the first missing one;
    the entry after it then carries a later seq.  REMOVED records are skipped (callers refuse
    an attach into a removed range before making a cursor).
    """

    def __init__(self, journal: Journal, from_seq: int) -> None:
        self._journal = journal
        self._from_seq = from_seq
        self._fd = os.open(journal.path, os.O_RDONLY | os.O_CLOEXEC)
        self._offset = len(MAGIC)
        self._held_gap: Gap | None = None
        self._skipping = True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _limit(self) -> int:
        # A finished journal may have been compacted (renamed over): our descriptor still reads
        # the old file, which is whole, so read it to its end.
        if self._journal.finished:
            return os.fstat(self._fd).st_size
        return self._journal.committed

    def read_nowait(self) -> Replayed | None:
        """The next entry, or None if none is there yet (or ever: see `at_end`)."""
        while True:
            record = read_record(self._fd, self._offset, self._limit())
            if record is None:
                gap, self._held_gap = self._held_gap, None
                return gap
            kind, seq, payload, next_offset = record
            self._offset = next_offset
            if kind in (K_META, K_REMOVED):
                continue
            entry = _decode_entry(kind, seq, payload)
            if isinstance(entry, Gap):
                if self._skipping and entry.seq <= self._from_seq:
                    self._held_gap = Gap(self._from_seq + 1, entry.reason)
                    continue
                self._skipping = False
                return entry
            assert not isinstance(entry, Removed)
            if self._skipping and entry.seq <= self._from_seq:
                self._held_gap = None
                continue
            self._skipping = False
            if self._held_gap is not None and entry.seq > self._held_gap.seq:
                gap, self._held_gap = self._held_gap, None
                self._offset = offset_before(record)
                return gap
            self._held_gap = None
            return entry

    def at_end(self) -> bool:
        """True when every entry has been read and the journal will not grow."""
        return (
            self._journal.finished
            and self._held_gap is None
            and read_record(self._fd, self._offset, self._limit()) is None
        )

    async def read(self) -> Replayed | None:
        """The next entry, waiting for it if the journal is live; None at the very end."""
        while True:
            entry = self.read_nowait()
            if entry is not None:
                return entry
            if self.at_end():
                return None
            await self._journal.wait_appended(self._offset)


def offset_before(record: tuple[int, int, bytes, int]) -> int:
    """The offset at which `record` (as read by read_record) starts."""
    _kind, _seq, payload, end = record
    return end - _FRAME.size - _HEAD.size - len(payload)


def compact(journal: Journal) -> None:
    """Retention: rewrite a completed journal as META, REMOVED and COMPLETED (atomically)."""
    completed = journal.completed
    assert completed is not None
    assert journal.finished
    removed = Removed(1, completed.seq - 1) if completed.seq > 1 else None
    data = MAGIC + encode_meta(journal.meta)
    if removed is not None:
        data += encode_entry(removed)
    data += encode_entry(completed)
    tmp = journal.path + ".compact"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, journal.path)
    journal.committed = len(data)
    journal.removed = removed
    journal.gap = None


def boot_id() -> str:
    """This boot's id: processes recorded under another boot cannot be alive."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""
