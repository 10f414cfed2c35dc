"""`ccx prompts record`: run a prompt's verification commands and record what happened.

The only writer of a prompt's metrics (see chain.py for why they are derived, not typed).
The entry is appended to the record first, then the prompt is replaced whole (a temporary
file renamed over it), so a failure leaves either the old prompt or the new one, never half
of one; if it leaves the old one behind a longer record, `rewrite_prompt`
(`ccx prompts record --rewrite-only`) re-applies the record without running anything.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

import trio

from cc_executor.executor.client import Connection
from cc_executor.executor.review.artifacts import load_record, record_name, record_path, shown
from cc_executor.executor.review.chain import CommandResult, Entry, entry_line, new_entry
from cc_executor.executor.review.metrics import apply_record
from cc_executor.executor.review.problems import Problem
from cc_executor.executor.review.runs import execute_through, utc_now
from cc_executor.executor.review.verify import Verification, verifications

VERIFY_TIMEOUT = 600.0  # seconds per command, enforced by the daemon


def resolved_argv(argv: tuple[str, ...]) -> tuple[str, ...]:
    """`python` is the interpreter ccx runs under (the daemon's PATH may not have it)."""
    return (sys.executable, *argv[1:]) if argv[:1] == ("python",) else argv


async def record_prompt(
    conn: Connection,
    prompt: Path,
    *,
    root: Path,
    timeout: float = VERIFY_TIMEOUT,  # noqa: ASYNC109 - enforced by the daemon
) -> Entry | list[Problem]:
    """Run every verification command, append the execution, rewrite the prompt's metrics."""
    name = shown(prompt, root)
    loaded = await trio.to_thread.run_sync(_load, prompt, root)
    if isinstance(loaded, list):
        return loaded
    text, commands, entries = loaded
    results: list[CommandResult] = []
    for command in commands:
        execution = await execute_through(
            conn, resolved_argv(command.argv), cwd=str(root), timeout=timeout
        )
        stdout = execution.stdout.decode(errors="replace")
        results.append(
            CommandResult(
                argv=command.argv,
                run=execution.run,
                exit_code=execution.exit_code,
                outcome=execution.outcome,
                duration=round(execution.duration, 3),
                expect=command.expect,
                missing=tuple(e for e in command.expect if e not in stdout),
            )
        )
    entry = new_entry(entries, utc_now(), prompt.stem, results)
    updated = apply_record(text, [*entries, entry], record_name(prompt))
    if isinstance(updated, Problem):
        return [Problem(name, updated.line, updated.message)]
    await trio.to_thread.run_sync(_save, prompt, entry, updated)
    return entry


def rewrite_prompt(prompt: Path, *, root: Path) -> tuple[Entry, ...] | list[Problem]:
    """Rewrite the prompt's metrics from its record as it stands; returns the record's entries."""
    entries, broken = load_record(prompt, root)
    if broken:
        return broken
    updated = apply_record(prompt.read_text(), entries, record_name(prompt))
    if isinstance(updated, Problem):
        return [Problem(shown(prompt, root), updated.line, updated.message)]
    _replace(prompt, updated)
    return tuple(entries)


def _load(prompt: Path, root: Path) -> tuple[str, list[Verification], list[Entry]] | list[Problem]:
    """The prompt's text, its verification commands and its record, or why we cannot run."""
    text = prompt.read_text()
    commands, problems = verifications(shown(prompt, root), text)
    entries, broken = load_record(prompt, root)
    problems += broken
    return problems if problems else (text, commands, entries)


def _save(prompt: Path, entry: Entry, updated: str) -> None:
    record = record_path(prompt)
    record.parent.mkdir(parents=True, exist_ok=True)
    with record.open("a") as f:
        f.write(entry_line(entry) + "\n")
    _replace(prompt, updated)


def _replace(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path` (with its mode), then rename it over it."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)  # gone already once renamed
