"""The run's lifecycle as a table: which action moves which state where (cf. h11's _state.py).

Theory of operation: a run is RUNNING or PAUSED while its processes live, ENDING while the
ladder or the sweep of leftovers runs and its output drains, and COMPLETED once its outcome is
known.  Every change of `Run.state` goes through `next_state`, so a transition that is not in
`TRANSITIONS` cannot happen: it raises InvalidTransition, the error callers map to "invalid
state".  END from ENDING is in the table on purpose: a second cancel joins the ladder in
progress.  COMPLETE from RUNNING or PAUSED is the runner being aborted (cancelled from
outside); a run that ends normally always passes through ENDING.
"""

from __future__ import annotations

import enum

from cc_executor.supervision.errors import InvalidTransition
from cc_executor.supervision.events import RunState


class Action(enum.Enum):
    """What moves a run from one state to another."""

    PAUSE = "pause"
    RESUME = "resume"
    END = "cancel"  # its name in errors: a cancel is what a caller asks for
    COMPLETE = "complete"


RUNNING, PAUSED, ENDING, COMPLETED = (
    RunState.RUNNING,
    RunState.PAUSED,
    RunState.ENDING,
    RunState.COMPLETED,
)

TRANSITIONS: dict[tuple[RunState, Action], RunState] = {
    (RUNNING, Action.PAUSE): PAUSED,
    (PAUSED, Action.RESUME): RUNNING,
    (RUNNING, Action.END): ENDING,
    (PAUSED, Action.END): ENDING,
    (ENDING, Action.END): ENDING,
    (ENDING, Action.COMPLETE): COMPLETED,
    (RUNNING, Action.COMPLETE): COMPLETED,
    (PAUSED, Action.COMPLETE): COMPLETED,
}

# Every (from, to) pair a run's state may take, for checks from outside (tests, metrics).
EDGES: frozenset[tuple[RunState, RunState]] = frozenset(
    (state, target) for (state, _action), target in TRANSITIONS.items()
)


def next_state(state: RunState, action: Action) -> RunState:
    """Where `action` takes a run in `state`.

    Raises:
        InvalidTransition: the table has no such move ("cannot pause a paused run").
    """
    try:
        return TRANSITIONS[state, action]
    except KeyError:
        article = "an" if state.value[0] in "aeiou" else "a"  # "cannot pause an ending run"
        raise InvalidTransition(f"cannot {action.value} {article} {state.value} run") from None
