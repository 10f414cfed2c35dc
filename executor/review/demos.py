"""`ccx review run`: every usage demo, as a run of the daemon, and its execution log."""

from __future__ import annotations

from cc_executor.executor.client import Connection
from cc_executor.executor.review.execlog import DEMOS, demo_argv, demo_passed, render
from cc_executor.executor.review.runs import Execution, execute_through, utc_now

DEMO_TIMEOUT = 120.0  # seconds, enforced by the daemon; each demo takes a few


async def run_demos(
    conn: Connection,
    *,
    cwd: str,
    demos: tuple[tuple[str, tuple[str, ...]], ...] | None = None,
    timeout: float = DEMO_TIMEOUT,  # noqa: ASYNC109 - enforced by the daemon
) -> tuple[str, bool]:
    """Run the demos one after the other; return (execution log, whether all passed)."""
    chosen = demos if demos is not None else tuple((c, demo_argv(m)) for c, m in DEMOS)
    results: list[tuple[str, Execution]] = []
    for component, argv in chosen:
        results.append((component, await execute_through(conn, argv, cwd=cwd, timeout=timeout)))
    greeting = conn.greeting
    log = render(results, url=conn.url, version=greeting.version, at=utc_now())
    return log, all(demo_passed(c, e) for c, e in results)
