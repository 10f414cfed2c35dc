"""A slow client slows the child: the daemon's memory stays flat and nothing is dropped."""

from __future__ import annotations

import trio
from ccx_testing import open_client, run_daemon

LINE = b"0123456789" * 6 + b"abc\n"  # 64 bytes
TOTAL = 60_000_000
MiB = 1024 * 1024


async def test_slow_client_flat_memory_nothing_dropped() -> None:
    command = f"yes {LINE[:-1].decode()} | head -c {TOTAL}"
    with trio.fail_after(120):
        async with (
            run_daemon() as daemon,
            open_client(daemon.url, max_message_size=4 * MiB) as client,
        ):
            run = await client.execute(argv=["sh", "-c", command])
            await client.wait_output(run, b"\n")
            baseline = daemon.rss_kib()
            peak = baseline
            record = client.runs[run]
            # Drain slowly: a few frames, a pause, again; the child produces far faster.
            for step in range(60):
                for _ in range(3):
                    await client.receive()
                await trio.sleep(0.02)
                peak = max(peak, daemon.rss_kib())
                if step == 40:
                    received = len(record.stdout)
                    status = await client.call("status", run=run)
                    # What the daemon has taken from the pipe is only a little ahead of what
                    # this client has received: the rest waits in the pipe, and the child
                    # waits in write().  (In flight: socket buffers, the channel, the pump.)
                    in_flight = status["stdout_bytes"] - received
                    assert in_flight < 24 * MiB, in_flight
                    assert status["stdout_bytes"] < TOTAL, "the child was not slowed"
                    assert status["state"] == "running"
            record = await client.wait_completed(run)
    assert record.completed is not None
    assert record.completed["exit_code"] == 0
    assert len(record.stdout) == TOTAL
    assert record.stdout == LINE * (TOTAL // len(LINE)) + LINE[: TOTAL % len(LINE)]
    growth_mib = (peak - baseline) / 1024
    assert growth_mib < 16, f"daemon RSS grew by {growth_mib:.1f} MiB while a client lagged"
