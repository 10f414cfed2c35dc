"""A daemon never carries another daemon's marker, nor a run's.

Every process of a daemon's runs carries ``CCX_DAEMON=<its id>`` and ``CCX_RUN_ID=<run>``
(supervision/marker.py), and a daemon that finds a dead daemon's record kills every process
carrying that id, and what descends from one (executor/daemon/record.py).  A ``ccx serve``
started from inside a run — an agent that starts a daemon of its own — inherits both: its
/proc/<pid>/environ (the environment given to execve, whatever the process does to its own
copy later) says it is the outer daemon's, and once that one died, the next daemon on its state
directory would SIGKILL the inner daemon as a leftover, and through descent all of its runs.

So ``ccx serve`` started with either variable (and no proof that they are its own) re-executes
itself once, before doing anything else (`reexec_unmarked`): the same interpreter and argv, the
same environment but without ``CCX_RUN_ID``, and ``CCX_DAEMON`` set to a new id of its own,
with ``CCX_DAEMON_PID`` its pid (which execve keeps) to say it is its own.  That id is the
daemon's (`own_id`, used by `DaemonRecord.claim`); its runs carry it as every daemon's do.  The
marker of its own is also what stops descent: a process carrying another daemon's marker than
the one it descends from is that daemon's, and so is everything under it
(supervision/leftovers.py) — so the inner daemon and its runs survive the outer one's sweep
even while the run that started it is alive.  Nor is the daemon taken for the run's root when it
is that root itself (``ccx serve`` as a run's command: same pid, same start time), since it
carries the proof that it re-executed itself as a daemon.  A daemon started without either
variable needs none of this and is not re-executed.  Where the exec fails (E2BIG, ENOMEM), or
for a daemon served in-process (tests), the daemon serves as it is and says so (`inherited`,
``daemon.marker_inherited``).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping

from cc_executor.supervision.marker import DAEMON_PID_VAR as OWN_PID_VAR
from cc_executor.supervision.marker import DAEMON_VAR, RUN_ID_VAR

# Why `reexec_unmarked` could not exec (None: it did not need to, or it did).
failure: str | None = None


def own_id(env: Mapping[str, str] | None = None) -> str | None:
    """The id this process was re-executed with (`reexec_unmarked`), or None."""
    env = os.environ if env is None else env
    if env.get(OWN_PID_VAR) != str(os.getpid()):
        return None
    return env.get(DAEMON_VAR) or None


def inherited(env: Mapping[str, str] | None = None) -> list[str]:
    """The markers this process carries that are not its own (a run's, another daemon's)."""
    env = os.environ if env is None else env
    names = [RUN_ID_VAR] if RUN_ID_VAR in env else []
    if DAEMON_VAR in env and own_id(env) is None:
        names.append(DAEMON_VAR)
    return names


def reexec_unmarked() -> None:
    """Exec this program again with a marker of its own if it carries another's (the module
    docstring); returns only when there is no need, or the exec failed (`failure` says why)."""
    global failure
    if not inherited():
        return
    env = {name: value for name, value in os.environ.items() if name != RUN_ID_VAR}
    env[DAEMON_VAR] = secrets.token_hex(16)
    env[OWN_PID_VAR] = str(os.getpid())
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError as exc:
        failure = f"cannot re-execute {sys.executable}: {exc.strerror or exc}"
