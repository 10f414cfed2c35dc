"""The termination ladder: SIGTERM to everything, a grace period, then SIGKILL to whatever is left.

Every rung includes the sweep of members that left the process group (signalling.drive), so a
descendant that called setsid() is ended like the rest.  A rung is over when every member is
gone (dead or a zombie), not when the signal was sent.
"""

from __future__ import annotations

import signal

import structlog
import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.outcome import Rung
from cc_executor.supervision.signalling import Target, Until, drive

log = structlog.get_logger()


async def terminate(target: Target, config: SupervisionConfig, *, was_paused: bool) -> Rung:
    """Run the ladder; return the rung at which every member was gone.

    Args:
        was_paused: the run is stopped, so SIGCONT follows SIGTERM to let it act on it.
    """
    left = await drive(
        target,
        signal.SIGTERM,
        Until.GONE,
        deadline=trio.current_time() + config.term_grace,
        config=config,
        follow_with=signal.SIGCONT if was_paused else None,
    )
    if not left:
        return Rung.SIGTERM
    log.info("ladder.sigkill", pgid=target.pgid, pids=sorted(left))
    await kill(target, config)
    return Rung.SIGKILL


async def kill(target: Target, config: SupervisionConfig) -> bool:
    """SIGKILL every member, re-enumerating, and wait up to kill_wait; True if all are gone."""
    left = await drive(
        target,
        signal.SIGKILL,
        Until.GONE,
        deadline=trio.current_time() + config.kill_wait,
        config=config,
    )
    if left:
        # Typically uninterruptible sleep (state D): nothing more can be done from user space.
        log.error("ladder.survivors", pgid=target.pgid, pids=sorted(left))
    return not left
