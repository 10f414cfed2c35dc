"""The journal's record format: encoding, decoding, and finding records in damaged files.

A journal file is the magic, then records, each written whole::

    u32 body length | u32 CRC-32 of body, seeded | body = u8 kind | u64 seq | payload

Every record is bound to its journal (format v2, magic ``CCXJRNL2``): its CRC-32 starts from
the journal's seed (`seed_of` its run id, which every reader knows from the file's name even
when its head is damaged) instead of 0, so a record of another journal, a whole and valid one
(found after damage inside a payload that holds another journal's bytes, or in stale blocks
after a cut), fails its CRC here like any damaged bytes.  A v1 file (``CCXJRNL1``) is the same
format unseeded (seed 0: a plain CRC-32), still read, and appended to in its own format.

Kinds: META (seq 0, the run's facts), OUTPUT (stream, bytes), STATE (paused/running),
COMPLETED (the outcome and byte counts), GAP (output from this seq on was not recorded),
REMOVED (retention dropped seqs first..last) and NOTE (a note the run's owner posted: its name
and opaque body).  Payload fields are length-prefixed bytes; there is no JSON here (a note's
body is bytes to this layer).

Reading a record has three outcomes (journal_reader.py's `read_record`): a whole `Record` that
passes its CRC, an `Incomplete` one (fewer bytes than it claims: a torn tail, or the end of what
is committed) and a `Corrupt` one (a length no writer produces, a CRC that fails, a kind that does
not exist).  Finding records again after damage is journal_scan.py's.
"""

from __future__ import annotations

import os
import struct
from typing import Literal

import attrs

from cc_executor.supervision.events import (
    Completed,
    CompletedEvent,
    Note,
    Output,
    RunState,
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

try:
    # The same CRC-32 as zlib's (one polynomial: journals are read back by either), made with
    # the CPU's carry-less multiply: ~4x zlib 1.2's speed, which is a fifth of replay's cost.
    from zlib_ng.zlib_ng import crc32 as crc32
except ImportError:  # a platform without zlib-ng's wheel
    from zlib import crc32 as crc32

MAGIC = b"CCXJRNL2"  # what every new file is written as: records bound to their journal
MAGIC_V1 = b"CCXJRNL1"  # records not bound (seed 0); still read, and appended to as such
MAGICS = (MAGIC, MAGIC_V1)
UNBOUND = 0  # the seed of a v1 record: its CRC is a plain CRC-32
FRAME = struct.Struct("<II")  # body length, crc32 seeded with its journal's seed
HEAD = struct.Struct("<BQ")  # kind, seq
_LEN16 = struct.Struct("<H")
_LEN32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
MAX_RECORD = 64 * 1024 * 1024  # a length beyond this can only be a torn or corrupt header

K_META, K_OUTPUT, K_STATE, K_COMPLETED, K_GAP, K_REMOVED, K_NOTE = range(7)
_STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")

QuotaPolicy = Literal["block", "gap"]

DAMAGED = "journal damaged"


class JournalError(Exception):
    """A path cannot be read as a journal (not a regular file)."""


JOURNAL_SUFFIX = ".journal"  # a journal's file is named <run id>JOURNAL_SUFFIX


def run_id_of(path: str) -> str:
    """The run id a journal's file name says: what binds its records (`seed_of`).  Taken from
    the name, never from its META, so that it is known when the head cannot be read too; a
    compacted copy is written under another name but with its journal's seed."""
    return os.path.basename(path).removesuffix(JOURNAL_SUFFIX)


def seed_of(run_id: str) -> int:
    """The seed of the CRC-32 of every record of the journal of `run_id` (format v2).

    Two run ids share a seed with odds of one in 2**32; and a record's CRC seeded with
    another seed never holds (for the same bytes, CRCs from two seeds differ by the seeds'
    difference carried through the bytes, an invertible map: never 0), so another journal's
    record never passes here, whatever it holds.
    """
    return crc32(b"ccx-journal:" + os.fsencode(run_id))


def seeds_of_magic(magic: bytes, seed: int) -> tuple[int, ...] | None:
    """The seed a file's records are checked with, as its magic says (`seed`: its journal's,
    for a v2 file; UNBOUND for a v1 file), or None if the magic is neither (damaged)."""
    if magic == MAGIC:
        return (seed,)
    if magic == MAGIC_V1:
        return (UNBOUND,)
    return None


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
    # The root's start time in clock ticks since boot (/proc/<pid>/stat field 22): with the
    # pid, it identifies the root beyond pid reuse.  None in journals that predate it.
    root_start_ticks: int | None = None


@attrs.frozen
class Gap:
    """Events from `seq` on are missing from the journal; `reason` says why.

    `until_seq` is the last missing seq when it is known; `offset` and `length` locate the
    damaged bytes in the file when the reason is damage.
    """

    seq: int
    reason: str
    until_seq: int | None = None
    offset: int | None = None
    length: int | None = None


@attrs.frozen
class Removed:
    """Retention removed the events `first`..`last` (inclusive)."""

    first: int
    last: int


Entry = Output | StateEvent | CompletedEvent | Gap | Removed | Note


@attrs.frozen
class Record:
    """A whole record that passed its checks, at `offset`; the next one starts at `end`."""

    kind: int
    seq: int
    payload: bytes | memoryview  # a view of the bytes read: decode_entry copies what it keeps
    offset: int
    end: int
    # A big output's data, read into its own buffer apart from the head (the payload is then
    # the stream byte only), so decoding it copies nothing.
    data: bytes | None = None


@attrs.frozen
class Incomplete:
    """`available` bytes from `offset` to the limit, fewer than the record there needs."""

    offset: int
    available: int


@attrs.frozen
class Corrupt:
    """The bytes at `offset` are not a record (`why` says which check failed)."""

    offset: int
    why: str


ReadResult = Record | Incomplete | Corrupt


# -- fields --------------------------------------------------------------------------------


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
        if timeout_kind not in ("idle", "absolute"):
            raise ValueError(f"unknown timeout kind {timeout_kind!r}")
        return TimedOut(
            kind="idle" if timeout_kind == "idle" else "absolute",
            rung=Rung(fields["rung"].decode()),
            exit=_exit_from(fields["exit"]),
        )
    if kind == "spawn_failed":
        return SpawnFailed(fields["reason"].decode())
    if kind == "lost":
        return Lost(fields["reason"].decode())
    raise ValueError(f"unknown outcome {kind!r}")


# -- records -------------------------------------------------------------------------------


def encode_meta(meta: Meta, seed: int) -> bytes:
    """The META record of a journal whose records are bound by `seed`."""
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
    if meta.root_start_ticks is not None:
        fields["root_start_ticks"] = str(meta.root_start_ticks).encode()
    return _record(K_META, 0, _pack_fields(fields), seed)


def decode_meta(payload: bytes) -> Meta:
    fields = _unpack_fields(payload)
    policy = fields["quota_policy"].decode()
    ticks = fields.get("root_start_ticks")
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
        root_start_ticks=None if ticks is None else int(ticks),
    )


def _record(kind: int, seq: int, payload: bytes, seed: int) -> bytes:
    body = HEAD.pack(kind, seq) + payload
    return FRAME.pack(len(body), crc32(body, seed)) + body


def encode_entry(entry: Entry, seed: int) -> bytes:
    """One record, framed and checksummed from `seed` (its journal's: `seed_of`, or UNBOUND
    in a v1 file)."""
    match entry:
        case Output(seq=seq, stream=stream, data=data):
            return _record(K_OUTPUT, seq, bytes([_STREAMS.index(stream)]) + data, seed)
        case StateEvent(seq=seq, state=state):
            return _record(K_STATE, seq, state.value.encode(), seed)
        case CompletedEvent(seq=seq, completed=completed):
            fields = _outcome_fields(completed.outcome)
            fields["stdout_bytes"] = str(completed.stdout_bytes).encode()
            fields["stderr_bytes"] = str(completed.stderr_bytes).encode()
            fields["duration"] = repr(completed.duration).encode()
            return _record(K_COMPLETED, seq, _pack_fields(fields), seed)
        case Gap(seq=seq, reason=reason):
            return _record(K_GAP, seq, reason.encode(), seed)
        case Removed(first=first, last=last):
            return _record(K_REMOVED, first, _U64.pack(last), seed)
        case Note(seq=seq, name=name, data=data):
            return _record(K_NOTE, seq, _pack_fields({"name": name.encode(), "data": data}), seed)


def decode_entry(record: Record) -> Entry:
    """The entry a record holds.

    Raises:
        ValueError: the payload does not decode (UnicodeDecodeError is a ValueError; a
            missing field or a short one, struct.error, is reported as one too).
    """
    kind, seq, view = record.kind, record.seq, record.payload
    try:
        if kind == K_OUTPUT:  # a big output's data was read apart; a small one's is copied
            data = bytes(view[1:]) if record.data is None else record.data
            return Output(seq=seq, stream=_STREAMS[view[0]], data=data)
        payload = bytes(view)
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
        if kind == K_NOTE:
            fields = _unpack_fields(payload)
            return Note(seq=seq, name=fields["name"].decode(), data=fields["data"])
    except (KeyError, IndexError, struct.error) as exc:
        raise ValueError(f"record at {record.offset}: {exc!r}") from None
    raise ValueError(f"record at {record.offset}: unknown kind {kind}")
