"""The termination ladder: SIGTERM to everything, a grace period, then SIGKILL to whatever is left.

Optionally (config.interrupt_grace) an interrupt rung comes first: SIGINT to the process group
only, as a terminal's Ctrl-C would send it, then a wait for every member to be gone.  A program
that cleans up on SIGINT (Claude Code writes its `result` and kills the tools it started in
their own sessions) can then end properly; whatever it leaves goes down the usual rungs.

Every rung includes the sweep of members that left the process group (signalling.drive), so a
descendant that called setsid() is ended like the rest.  A rung is over when every member is
gone (dead or a zombie), not when the signal was sent.

SIGCONT follows SIGTERM and SIGINT to every member, whoever stopped it: a stopped process acts
on neither until it is continued, and the run may be stopped by PAUSE or by anything else (a
SIGSTOP from outside, a SIGTSTP, a process that stopped itself).  Without it such a process
would sit out the grace and go at SIGKILL, never having had the chance to clean up.
"""

from __future__ import annotations

import signal

import structlog
import trio

from cc_executor.supervision.config import SupervisionConfig
from cc_executor.supervision.outcome import Rung
from cc_executor.supervision.signalling import Target, Until, drive, kill_group, signal_members

log = structlog.get_logger()

# Signal 0 is delivered to nobody: `drive` with it only waits for the members to be gone.
_WAIT_ONLY = 0


async def terminate(target: Target, config: SupervisionConfig) -> tuple[Rung, bool]:
    """Run the ladder; return the rung at which every member was gone, and whether they were
    all seen gone (False: SIGKILL went out, but some could not be seen to die — /proc could
    not be read for want of a descriptor, or a process is stuck in the kernel)."""
    if config.interrupt_grace is not None and await _interrupt(
        target, config, config.interrupt_grace
    ):
        return Rung.SIGINT, True
    left = await drive(
        target,
        signal.SIGTERM,
        Until.GONE,
        deadline=trio.current_time() + config.term_grace,
        config=config,
        follow_with=signal.SIGCONT,
    )
    if not left:
        return Rung.SIGTERM, True
    log.info("ladder.sigkill", pgid=target.pgid, pids=sorted(left))
    return Rung.SIGKILL, await kill(target, config)


async def _interrupt(target: Target, config: SupervisionConfig, grace: float) -> bool:
    """SIGINT to the group; True if every member was gone within `grace`."""
    kill_group(target.pgid, signal.SIGINT)
    # Stopped processes act on SIGINT only once continued: continue every member.
    signal_members(target, signal.SIGCONT)
    left = await drive(
        target,
        _WAIT_ONLY,
        Until.GONE,
        deadline=trio.current_time() + grace,
        config=config,
    )
    if left:
        log.info("ladder.sigint_survivors", pgid=target.pgid, pids=sorted(left))
    return not left


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
