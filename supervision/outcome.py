"""How a run ended: a sum type whose variants carry only their own fields."""

from __future__ import annotations

import enum
from typing import Literal

import attrs


class Rung(enum.Enum):
    """The step of the termination ladder at which every process of a run was gone."""

    SIGINT = "SIGINT"  # only on a ladder with an interrupt rung (SupervisionConfig)
    SIGTERM = "SIGTERM"
    SIGKILL = "SIGKILL"


@attrs.frozen
class Exited:
    """The root process exited on its own with this status."""

    code: int


@attrs.frozen
class Signalled:
    """The root process was ended by this signal number."""

    signal: int


@attrs.frozen
class Cancelled:
    """Somebody asked for the run to end; `exit` is how its root process ended."""

    reason: str
    rung: Rung
    exit: Exited | Signalled


@attrs.frozen
class TimedOut:
    """The run exceeded its absolute or idle (no output) timeout and was ended."""

    kind: Literal["idle", "absolute"]
    rung: Rung
    exit: Exited | Signalled


@attrs.frozen
class SpawnFailed:
    """The command could not be started."""

    message: str


@attrs.frozen
class Lost:
    """The run's fate is unknown (its supervisor died with it)."""

    reason: str


Outcome = Exited | Signalled | Cancelled | TimedOut | SpawnFailed | Lost


def exit_from_returncode(returncode: int) -> Exited | Signalled:
    """Translate a subprocess-style return code (negative = killed by signal)."""
    if returncode < 0:
        return Signalled(-returncode)
    return Exited(returncode)
