"""`ccx prompts record`: run a prompt's verification commands and record what happened.

The only writer of a prompt's metrics (see prompts.py for why they are derived, not typed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from cc_executor.executor.client import Connection
from cc_executor.executor.review.artifacts import record_name, record_path, shown
from cc_executor.executor.review.formats import Problem
from cc_executor.executor.review.prompts import (
    CommandResult,
    Entry,
    Verification,
    apply_record,
    entry_line,
    new_entry,
    parse_record,
    verifications,
)
from cc_executor.executor.review.runs import execute_through, utc_now

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


def _load(prompt: Path, root: Path) -> tuple[str, list[Verification], list[Entry]] | list[Problem]:
    """The prompt's text, its verification commands and its record, or why we cannot run."""
    text = prompt.read_text()
    commands, problems = verifications(shown(prompt, root), text)
    record = record_path(prompt)
    entries: list[Entry] = []
    if record.is_file():
        entries, broken = parse_record(shown(record, root), record.read_text(), prompt.stem)
        problems += broken
    return problems if problems else (text, commands, entries)


def _save(prompt: Path, entry: Entry, updated: str) -> None:
    record = record_path(prompt)
    record.parent.mkdir(parents=True, exist_ok=True)
    with record.open("a") as f:
        f.write(entry_line(entry) + "\n")
    prompt.write_text(updated)
