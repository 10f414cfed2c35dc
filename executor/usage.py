"""Usage demo of the executor: `python -m cc_executor.executor.usage`.

Starts a daemon in-process on 127.0.0.1 (port 0, a throw-away state directory), connects with
the client library, runs a command that writes to stdout and stderr and exits 3, pauses and
resumes a second run, cancels it, and checks that a policy refusal and an unknown run come
back as typed errors. Asserts what it shows and ends with a unique run marker,
`USAGE_executor_<UTC timestamp>`.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime

import trio

from cc_executor.executor.client import (
    Connection,
    Output,
    PolicyRefusedError,
    RunNotFoundError,
    open_connection,
)
from cc_executor.executor.config.server import ServerConfig
from cc_executor.executor.daemon.serve import serve
from cc_executor.executor.logs import configure_logging
from cc_executor.supervision import SupervisionConfig

LIMIT = 30  # seconds for the whole demo; it takes about one


async def demo() -> None:
    with tempfile.TemporaryDirectory(prefix="ccx-usage-") as state_dir:
        config = ServerConfig(
            host="127.0.0.1",
            port=0,
            allowed_commands=("sh", "sleep"),
            supervision=SupervisionConfig(term_grace=1.0, kill_wait=2.0),
            state_dir=state_dir,
        )
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:
                _daemon, listening = await nursery.start(serve, config)
                url = f"ws://127.0.0.1:{listening.port}/"
                print("daemon  :", url)
                async with open_connection(url) as conn:
                    await _run_and_check(conn)
                nursery.cancel_scope.cancel()
    print(f"USAGE_executor_{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}")


async def _run_and_check(conn: Connection) -> None:
    run = await conn.execute(["sh", "-c", "echo hello; echo oops >&2; exit 3"])
    streams: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    async for event in run:
        if isinstance(event, Output):
            streams[event.stream] += event.data
    completed = run.completed
    assert completed is not None
    print("run     :", run.id, streams, completed.outcome, completed.exit_code)
    assert streams == {"stdout": b"hello\n", "stderr": b"oops\n"}, streams
    assert (completed.outcome, completed.exit_code) == ("exited", 3), completed

    sleeper = await conn.execute(["sleep", "30"])
    await sleeper.pause()
    assert (await sleeper.status()).state == "paused"
    await sleeper.resume()
    assert (await sleeper.status()).state == "running"
    rung = await sleeper.cancel()
    ended = await sleeper.wait()
    print("control :", sleeper.id, "paused, resumed, cancelled by", rung, "->", ended.outcome)
    assert ended.outcome == "cancelled", ended

    refused: PolicyRefusedError | None = None
    try:
        await conn.execute(["rm", "-rf", "/nonexistent"])
    except PolicyRefusedError as exc:
        refused = exc
    assert refused is not None, "rm ran although only sh and sleep are allowed"
    assert refused.rule == "allowed_commands", refused.rule
    print("refused :", refused.rule, refused.message)
    unknown: RunNotFoundError | None = None
    try:
        await conn.run_status("no-such-run")
    except RunNotFoundError as exc:
        unknown = exc
    assert unknown is not None, "status of an unknown run succeeded"
    print("unknown :", unknown.code, unknown.message)


def main() -> None:
    configure_logging("warning", json=False)
    trio.run(demo)


if __name__ == "__main__":
    main()
