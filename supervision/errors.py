"""Errors the supervision layer raises to its callers."""

from __future__ import annotations


class SupervisionError(Exception):
    """Base class of every error raised on purpose by cc_executor.supervision."""


class SpawnError(SupervisionError):
    """The command could not be started; the message says why, for humans."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidTransition(SupervisionError):
    """A control call that the run's current state does not allow (e.g. pause a paused run)."""


class ControlTimeout(SupervisionError):
    """Some processes did not reach the requested state within control_timeout."""

    def __init__(self, action: str, not_stopped: list[int]) -> None:
        super().__init__(f"{action}: processes {not_stopped} did not reach the state in time")
        self.action = action
        self.not_stopped = not_stopped


class DuplicateRun(SupervisionError):
    """A run with this id is already registered."""


class SinkClosed(SupervisionError):
    """Raised by a pump's sink that is gone for good (its client disconnected).

    The only error that switches a pump to discard mode; anything else a sink raises is a bug
    and propagates to the run's owner.
    """


class StdinClosed(InvalidTransition):
    """The run's stdin is not a pipe, is closed, or closed before these bytes were written."""


class StdinFull(InvalidTransition):
    """A stdin write that would take the run's pending stdin bytes over its bound."""

    def __init__(self, pending: int, size: int, bound: int) -> None:
        super().__init__(
            f"stdin: {size} more bytes would exceed the bound of {bound} "
            f"({pending} bytes wait for the child to read)"
        )
        self.pending = pending
        self.size = size
        self.bound = bound
