"""The drain with a client that has stopped reading (a SIGSTOPped process, a dead host).

Observed on main (an outside probe, a real SIGSTOPped client flooding with `yes`): the drain's
ladder ended the child with SIGTERM at once, but its completion could not be sent to the
stalled client, so the session waited for it until the drain's last bound cancelled everything:
the daemon took 23 s instead of 2 to stop, and the run was recorded as ended by "runner
cancelled" at rung sigkill, not by the drain.  The drain now gives such a client
``close_timeout`` to take the completions, then closes it, and the runs are recorded as the
ladder ended them.  The client here is a real socket that never reads (a small receive buffer).
It is dropped then (1006), not sent a close frame that would wait another close_timeout behind
the output it never took.
"""

from __future__ import annotations

import attrs
import orjson
import trio
from ccx_testing import make_config, start_daemon, wait_until
from faults_net_testing import open_stalled

from bench.rawws import client_frame
from cc_executor.executor.config.transport import TransportConfig


async def test_a_client_that_stopped_reading_does_not_hold_the_drain_or_hide_why_runs_ended(
    nursery: trio.Nursery,
) -> None:
    config = make_config(shutdown_grace=0.2)
    config = attrs.evolve(config, transport=attrs.evolve(config.transport, close_timeout=1.0))
    assert isinstance(config.transport, TransportConfig)
    served = await start_daemon(nursery, config)
    execute = {"jsonrpc": "2.0", "id": 1, "method": "execute", "params": {"argv": ["yes"]}}
    with trio.fail_after(60):
        stream = await open_stalled(served.port, None)
        await stream.send_all(client_frame(0x1, orjson.dumps(execute)))
        await wait_until(lambda: served.daemon.runs.live == 1)
        (live,) = served.daemon.runs.live_runs()
        # Output is flowing.  How much the kernel's buffers take before the pump blocks
        # depends on the machine (one CI host stalled at 120 KiB), but `yes` writes far more
        # than they hold before the drain's ladder ends it, so the completion is always queued
        # behind a frame the client never takes.
        await wait_until(lambda: live.run.stdout_bytes > 0)
        (session,) = served.daemon.sessions
        await served.daemon.shutdown()
        assert session.ws.closed is not None
        assert session.ws.closed.code == 1006  # dropped, not closed with 1001
        assert live.completion is not None
        assert live.completion.reason == "daemon shutdown"
        assert live.completion.outcome == "cancelled"
        await trio.aclose_forcefully(stream)
