"""Running one command through the daemon and keeping what it did: the review loop's I/O core.

Every command the loop runs — a usage demo, a prompt's verification, the reviewer, the
implementer — is a run of cc-executor, started with the client library, so what the review
records is what the daemon observed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import attrs
import trio

from cc_executor.executor.client import Connection, Output

KEEP_BYTES = 1024 * 1024  # of each stream, the tail kept in memory


class _Sink(Protocol):
    async def write(self, data: bytes, /) -> int: ...
    async def aclose(self) -> None: ...


@attrs.frozen
class Execution:
    """One finished run, as the daemon reported it."""

    argv: tuple[str, ...]
    run: str
    started_at: str
    outcome: str
    exit_code: int | None
    duration: float
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.outcome == "exited" and self.exit_code == 0


def utc_now() -> str:
    return f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"


def stderr_log(log: Path) -> Path:
    """Where the stderr of a run logged to `log` goes: `reviewer.log` -> `reviewer.stderr.log`."""
    return log.with_suffix(".stderr.log")


async def execute_through(
    conn: Connection,
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - enforced by the daemon, reported as an outcome
    log: Path | None = None,
) -> Execution:
    """Run `argv` on the daemon to completion.

    With `log`, its stdout is also written there as it comes, and its stderr beside it
    (`stderr_log`), so neither file interleaves the two streams.
    """
    started_at = utc_now()
    began = trio.current_time()
    run = await conn.execute(list(argv), cwd=cwd, env=dict(env or {}), timeout=timeout)
    streams = {"stdout": bytearray(), "stderr": bytearray()}
    sinks: dict[str, _Sink] = {}
    try:
        if log is not None:
            sinks["stdout"] = await trio.open_file(log, "wb")
            sinks["stderr"] = await trio.open_file(stderr_log(log), "wb")
        async for event in run:
            if isinstance(event, Output):
                kept = streams[event.stream]
                kept += event.data
                del kept[:-KEEP_BYTES]
                if sinks:
                    await sinks[event.stream].write(event.data)
    finally:
        with trio.move_on_after(5, shield=True):
            for sink in sinks.values():
                await sink.aclose()
    completed = run.completed
    assert completed is not None  # the stream ends with Completed or raises
    duration = completed.execution_time
    return Execution(
        argv=tuple(argv),
        run=run.id,
        started_at=started_at,
        outcome=completed.outcome,
        exit_code=completed.exit_code,
        duration=duration if duration is not None else trio.current_time() - began,
        stdout=bytes(streams["stdout"]),
        stderr=bytes(streams["stderr"]),
    )
