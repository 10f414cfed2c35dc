"""JSON-RPC 2.0 messages as typed values; codec.py owns their wire form."""

from collections.abc import Mapping
from typing import TypeAlias

import attrs

# A JSON value as orjson produces and accepts it.
JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None

# JSON-RPC ids we accept: strings and integers (never floats, bools or null).
Id: TypeAlias = int | str


@attrs.frozen
class ErrorObject:
    """The `error` member of an error response."""

    code: int
    message: str
    data: JSON = None


@attrs.frozen
class Request:
    """A call that expects a response; `params` is any JSON object."""

    id: Id
    method: str
    params: Mapping[str, object]


@attrs.frozen
class Notification:
    """A one-way message; `params` is any JSON object."""

    method: str
    params: Mapping[str, object]


@attrs.frozen
class Response:
    """A successful reply to the request with the same id."""

    id: Id
    result: Mapping[str, object]


@attrs.frozen
class ErrorResponse:
    """A failed reply; `id` is None when the request's id could not be read."""

    id: Id | None
    error: ErrorObject


Message: TypeAlias = Request | Notification | Response | ErrorResponse
Reply: TypeAlias = Response | ErrorResponse
