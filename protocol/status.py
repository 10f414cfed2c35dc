"""What `status` and `list` answer, as typed values: a run's info, the daemon's.

Results like the others (results.py re-exports them, server_codec.py owns their JSON form),
in a module of their own so that a client decoding `list` or `status` builds these classes and
not every result's (W6: `ccx ps`).
"""

from collections.abc import Mapping

import attrs

from cc_executor.protocol.messages import JSON
from cc_executor.protocol.notices import Completion


@attrs.frozen
class RunInfo:
    """One run as `status {run}` and `list` describe it.

    `completion` is set once the run is over; its fields appear beside the others on the wire.
    `here` says whether the run belongs to the connection asking (None: not said).
    """

    run: str
    state: str
    pid: int | None
    pgid: int | None
    argv: tuple[str, ...]
    elapsed: float
    stdout_bytes: int
    stderr_bytes: int
    last_seq: int
    started: float | None = None  # unix time
    durable: bool = False
    owner: str | None = None
    here: bool | None = None
    completion: Completion | None = None
    journal: Mapping[str, JSON] | None = None
    claude: Mapping[str, JSON] | None = None
    # The wire object of this info, made ahead by a holder that keeps it (a finished durable
    # run's: `list` of thousands of them then only copies them); not part of its value.
    wire: Mapping[str, JSON] | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def outcome(self) -> str | None:
        """How the run ended (None while it is not over)."""
        return None if self.completion is None else self.completion.outcome

    @property
    def exit_code(self) -> int | None:
        return None if self.completion is None else self.completion.exit_code

    @property
    def signal(self) -> str | None:
        return None if self.completion is None else self.completion.signal


@attrs.frozen
class DaemonInfo:
    """`status {}`: the daemon as the caller may see it (`state_dir` for admins only)."""

    server: str
    version: str
    instance: str
    uptime: float
    connections: int
    live_runs: int
    runs_started: int
    durable_runs: int
    live_durable_runs: int
    draining: bool
    state_dir: str | None = None
