"""A prompt's execution record: `.records/<prompt>.jsonl`, one digest-chained entry a line.

Theory of operation: a prompt's Success/Failure ratio, execution count, last-updated date,
record head and Execution Log table are never typed by hand. `ccx prompts record` appends one
entry per execution (every verification command of the prompt, run through the daemon) to
`.records/<prompt>.jsonl` beside the prompt, and `metrics.apply_record` rewrites those fields
from the whole record. Each entry carries the digest of the one before it and its own (SHA-256
of its canonical JSON), so editing, removing or reordering entries breaks the chain, and the
head digest shown in the prompt ties the prompt to the record's last entry. The validator
recomputes everything from the record: a count edited in the prompt, a success flipped in
the record, a dropped line — each is reported with where it is and what was expected. This
makes hand edits evident, not impossible: whoever recomputes every digest can forge a record.

This module owns the entries, their digests and the chain check. Pure: text in, entries and
problems out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import attrs
import orjson

from cc_executor.executor.review.problems import Problem

GENESIS = "0" * 64
SHORT = 12  # hex digits of a digest, where one is shown


@attrs.frozen
class CommandResult:
    argv: tuple[str, ...]
    run: str
    exit_code: int | None
    outcome: str
    duration: float
    expect: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.outcome == "exited" and self.exit_code == 0 and not self.missing


@attrs.frozen
class Entry:
    """One execution of a prompt: every verification command, in order."""

    n: int
    at: str
    prompt: str
    commands: tuple[CommandResult, ...]
    success: bool
    prev: str
    digest: str


def _canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def _body(entry: Entry) -> dict[str, Any]:
    raw = attrs.asdict(entry, recurse=True)
    raw.pop("digest")
    return raw


def digest_of(entry: Entry) -> str:
    return hashlib.sha256(_canonical(_body(entry))).hexdigest()


def new_entry(
    previous: Sequence[Entry], at: str, prompt: str, commands: Sequence[CommandResult]
) -> Entry:
    """The entry that follows `previous`, sealed with its digest."""
    draft = Entry(
        n=len(previous) + 1,
        at=at,
        prompt=prompt,
        commands=tuple(commands),
        success=all(c.passed for c in commands) and bool(commands),
        prev=previous[-1].digest if previous else GENESIS,
        digest="",
    )
    return attrs.evolve(draft, digest=digest_of(draft))


def entry_line(entry: Entry) -> str:
    return orjson.dumps(attrs.asdict(entry, recurse=True)).decode()


def _command(raw: dict[str, Any]) -> CommandResult:
    return CommandResult(
        argv=tuple(raw["argv"]),
        run=str(raw["run"]),
        exit_code=raw["exit_code"],
        outcome=str(raw["outcome"]),
        duration=float(raw["duration"]),
        expect=tuple(raw["expect"]),
        missing=tuple(raw["missing"]),
    )


def parse_record(name: str, text: str, prompt: str) -> tuple[list[Entry], list[Problem]]:
    """Read a record and check its chain; the entries are kept up to the first broken one."""
    entries: list[Entry] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
            entry = Entry(
                n=raw["n"],
                at=raw["at"],
                prompt=raw["prompt"],
                commands=tuple(_command(c) for c in raw["commands"]),
                success=raw["success"],
                prev=raw["prev"],
                digest=raw["digest"],
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return entries, [Problem(name, number, f"unreadable record entry ({exc})")]
        want_prev = entries[-1].digest if entries else GENESIS
        checks = (
            (entry.n == len(entries) + 1, f"entry number {entry.n} (expected {len(entries) + 1})"),
            (entry.prompt == prompt, f"entry of prompt {entry.prompt!r} (expected {prompt!r})"),
            (
                entry.prev == want_prev,
                f"entry {entry.n}: prev {entry.prev[:SHORT]} does not chain to the entry "
                f"before it (expected {want_prev[:SHORT]}): an entry was removed or reordered",
            ),
            (
                entry.digest == digest_of(entry),
                f"entry {entry.n}: digest {entry.digest[:SHORT]} does not match its content "
                f"(expected {digest_of(entry)[:SHORT]}): the entry was edited",
            ),
            (
                entry.success == (all(c.passed for c in entry.commands) and bool(entry.commands)),
                f"entry {entry.n}: success={entry.success} contradicts its commands' results",
            ),
        )
        for ok, message in checks:
            if not ok:
                return entries, [Problem(name, number, message)]
        entries.append(entry)
    return entries, []
