"""The environment marker that attributes a process to its run even after it leaves the tree."""

from __future__ import annotations

RUN_ID_VAR = "CCX_RUN_ID"


def marker_entry(run_id: str) -> bytes:
    """The exact environ entry a process of this run carries."""
    return f"{RUN_ID_VAR}={run_id}".encode()
