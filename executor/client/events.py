"""What a run's stream yields, and what `status`/`list` return, as frozen values.

Built from notification params by `inbound.py`; nothing here does I/O.
"""

from __future__ import annotations

import signal
from typing import Any, Literal, TypeAlias

import attrs


@attrs.frozen
class Output:
    """A chunk of one stream; `data` is the exact bytes the child wrote."""

    run: str
    seq: int
    stream: Literal["stdout", "stderr"]
    data: bytes


@attrs.frozen
class Paused:
    """Every process of the run is stopped."""

    run: str
    seq: int


@attrs.frozen
class Resumed:
    """No process of the run is stopped any more."""

    run: str
    seq: int


@attrs.frozen
class Gap:
    """Events from ``seq`` on were not recorded (a durable run's journal quota, gap policy).

    The stream goes on with a later ``seq``: the output in between is lost, and says so.
    """

    run: str
    seq: int
    reason: str


@attrs.frozen
class Completed:
    """The run is over; always its last event.

    `outcome` is `exited`, `signalled`, `cancelled`, `timed_out`, `spawn_failed` or `lost`;
    `status` is the original CC-Executor's word (`completed`, `failed`, `canceled`).
    """

    run: str
    seq: int
    outcome: str
    status: str
    exit_code: int | None
    signal: str | None
    reason: str | None
    rung: str | None
    timeout: str | None
    execution_time: float | None
    stdout_bytes: int
    stderr_bytes: int

    @property
    def exit_status(self) -> int:
        """The shell's view: the exit code, 128+N for a signal, 1 when there is neither."""
        if self.signal is not None:
            try:
                return 128 + int(signal.Signals[self.signal])
            except KeyError:
                pass
        if self.exit_code is not None and self.exit_code < 0:
            return 128 - self.exit_code
        return self.exit_code if self.exit_code is not None else 1


RunEvent: TypeAlias = Output | Paused | Resumed | Gap | Completed


@attrs.frozen
class RunStatus:
    """One run as `status {run}` and `list` describe it; `raw` keeps every field sent."""

    run: str
    state: str
    pid: int | None
    argv: tuple[str, ...]
    elapsed: float
    stdout_bytes: int
    stderr_bytes: int
    last_seq: int
    outcome: str | None
    exit_code: int | None
    durable: bool
    signal: str | None = None
    started: float | None = None  # unix time, from daemons that send it
    raw: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen
class DaemonStatus:
    """The daemon as `status {}` describes it; `raw` keeps every field sent."""

    server: str
    version: str
    uptime: float
    connections: int
    live_runs: int
    runs_started: int
    draining: bool
    raw: dict[str, Any] = attrs.field(eq=False, repr=False)


@attrs.frozen
class Greeting:
    """The `connected` notification: who we talk to and what it can do."""

    session_id: str
    server: str
    version: str
    capabilities: frozenset[str]
    limits: dict[str, Any]


@attrs.frozen
class ShutdownNotice:
    """The daemon is draining: live runs have `grace` seconds to finish, then are cancelled."""

    reason: str
    grace: float | None
