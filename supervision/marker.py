"""The environment marker that attributes a process to its run even after it leaves the tree."""

from __future__ import annotations

RUN_ID_VAR = "CCX_RUN_ID"
# Every process of every run of one daemon carries that daemon's id too: what the next daemon
# on its state directory kills if it died without ending them (executor/daemon/record.py).
DAEMON_VAR = "CCX_DAEMON"
# Beside it in a daemon's own environment, its pid: the id is its own, not inherited from a run
# it was started in (executor/daemon/marking.py).
DAEMON_PID_VAR = "CCX_DAEMON_PID"


def marker_entry(run_id: str) -> bytes:
    """The exact environ entry a process of this run carries."""
    return f"{RUN_ID_VAR}={run_id}".encode()


def daemon_entry(daemon_id: str) -> bytes:
    """The exact environ entry every process of a daemon's runs carries."""
    return f"{DAEMON_VAR}={daemon_id}".encode()
