"""Compatibility profiles: what a connection's client speaks, as data its connection applies.

Theory of operation
-------------------
A profile is picked once per connection, at connect, from what the client asked for: the
path of its WebSocket upgrade and an explicit ``protocol`` query parameter (`profile_for`).

- ``/`` speaks the current protocol (`CURRENT`).
- ``/ws/mcp``, the original CC-Executor's path, speaks the original's (`ORIGINAL`): a client
  written for grahama1970/cc_executor (at 3429fb5) connects there and uses nothing new.
- ``?protocol=current`` or ``?protocol=original`` on either path says it outright; any other
  value is refused, never guessed at.

`ServerConnection(profile=...)` applies the profile; nothing else in the daemon looks at it.
The current profile changes nothing.  The original's:

- frames output one line per ``process.output`` (each with ``"truncated": false``), as the
  original did; the lines of one event keep that event's ``seq``;
- sends ``process.canceled`` just before the ``process.completed`` of a cancelled run, and
  of a run whose CANCEL the connection answered "canceled" (one that joined the ladder of
  a run ending by itself, whose completion says it exited);
- ignores ``execute`` and ``control`` params it does not know (pydantic did), reporting them
  in ``RequestReceived.ignored`` so the daemon can log them;
- answers with the original's error codes (`ORIGINAL_CODES`), and where the original had its
  own error for a params problem (an empty command), with that error (`ORIGINAL_PROBLEMS`);
- sends ``process.started``, ``paused``, ``resumed``, ``canceled`` and ``completed`` with
  every field of the original's ``StatusUpdate`` (models.py), which it sent whole:
  ``exit_code`` (null but in a completion) and ``error`` (always null here);
- takes a ``control`` without ``run``, when no run of the connection is live, for one on its
  latest run (`latest_run`): the original kept one process per connection, the last one
  started, and answered a control on it once it had ended with "process not found".

Replies precede the events they cause on every profile; that is the connection's own rule.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal
from urllib.parse import parse_qs, urlsplit

import attrs

from cc_executor.protocol.errors import ErrorCode, InvalidRequest
from cc_executor.protocol.messages import JSON, ErrorObject
from cc_executor.protocol.params import EMPTY_COMMAND

ProfileName = Literal["current", "original"]

ORIGINAL_PATH: Final = "/ws/mcp"
PROFILE_QUERY: Final = "protocol"


@attrs.frozen
class Profile:
    """How one connection frames what it sends and reads what it receives.

    Attributes:
        name: what the ``protocol`` query parameter calls it.
        output_lines: one ``process.output`` per line, with ``truncated``; else lines batched.
        announce_cancel: a ``process.canceled`` notification before a cancelled run's
            ``process.completed``.
        lenient_methods: methods whose unknown params are ignored instead of refused (-32602).
        error_codes: our error code -> the code this client knows for the same case.
        problem_errors: a params problem ``"<reason> @ <path>"`` (an InvalidParams error
            whose only problem it is) -> the code and message this client knows for it.
        greeting: ``connected`` says ``"protocol": name`` (a client can see what it got).
        latest_run: a request that leaves ``run`` out names the connection's latest run when
            none is live (else, with several ended runs, it must say which).
        status_nulls: ``process.started``/``paused``/``resumed``/``canceled``/``completed``
            carry ``exit_code`` and ``error``, null where they have no value.
    """

    name: ProfileName
    output_lines: bool = False
    announce_cancel: bool = False
    lenient_methods: frozenset[str] = frozenset()
    error_codes: Mapping[int, int] = attrs.field(factory=lambda: MappingProxyType({}))
    problem_errors: Mapping[str, tuple[int, str]] = attrs.field(
        factory=lambda: MappingProxyType({})
    )
    greeting: bool = False
    latest_run: bool = False
    status_nulls: bool = False

    def error(self, error: ErrorObject) -> ErrorObject:
        """`error` with the code this profile's client knows for it."""
        if (
            self.problem_errors
            and error.code == ErrorCode.INVALID_PARAMS
            and isinstance(error.data, list)
            and len(error.data) == 1
            and isinstance(error.data[0], str)
        ):
            known = self.problem_errors.get(error.data[0])
            if known is not None:
                return ErrorObject(*known)
        code = self.error_codes.get(error.code)
        return error if code is None else attrs.evolve(error, code=code)


CURRENT: Final = Profile("current")

# The original's codes (core/config.py and websocket_handler.py at 3429fb5): -32001 session
# limit, -32002 command not allowed, -32003 process not found; everything its handler did not
# name -- bad JSON, a malformed message, params pydantic refused, a command that failed to
# start -- reached its catch-all and was -32603.  Codes it never had (-32005 aside, which it
# answered as "process not found": a control on a process that is gone) keep ours.
ORIGINAL_CODES: Final[Mapping[int, int]] = MappingProxyType(
    {
        ErrorCode.PARSE_ERROR: ErrorCode.INTERNAL_ERROR,
        ErrorCode.INVALID_REQUEST: ErrorCode.INTERNAL_ERROR,
        ErrorCode.INVALID_PARAMS: ErrorCode.INTERNAL_ERROR,
        ErrorCode.SPAWN_FAILED: ErrorCode.INTERNAL_ERROR,
        ErrorCode.POLICY_REFUSED: -32002,  # "command not allowed"
        ErrorCode.RUN_NOT_FOUND: -32003,  # "process not found"
        ErrorCode.INVALID_STATE: -32003,
        ErrorCode.LIMIT_EXCEEDED: -32001,  # "session limit"
    }
)

# Params problems the original answered with an error of its own: an empty or blank command
# failed its `validate_command` (models.py), "command not allowed".
ORIGINAL_PROBLEMS: Final[Mapping[str, tuple[int, str]]] = MappingProxyType(
    {str(EMPTY_COMMAND): (-32002, "Command cannot be empty")}
)

ORIGINAL: Final = Profile(
    "original",
    output_lines=True,
    announce_cancel=True,
    lenient_methods=frozenset({"execute", "control"}),
    error_codes=ORIGINAL_CODES,
    problem_errors=ORIGINAL_PROBLEMS,
    greeting=True,
    latest_run=True,
    status_nulls=True,
)

PROFILES: Final[Mapping[str, Profile]] = MappingProxyType(
    {profile.name: profile for profile in (CURRENT, ORIGINAL)}
)


def profile_for(target: str) -> Profile:
    """The profile of a connection upgraded at `target` (its path and query).

    Raises:
        InvalidRequest: the query names a profile that does not exist, or more than one.
    """
    url = urlsplit(target)
    asked = parse_qs(url.query, keep_blank_values=True).get(PROFILE_QUERY)
    if asked is None:
        return ORIGINAL if url.path == ORIGINAL_PATH else CURRENT
    if len(asked) != 1 or asked[0] not in PROFILES:
        known: list[JSON] = list(sorted(PROFILES))
        raise InvalidRequest(
            f"unknown protocol {', '.join(asked)!r}: use ?{PROFILE_QUERY}= one of {known}",
            {"protocol": list[JSON](asked), "known": known},
        )
    return PROFILES[asked[0]]
