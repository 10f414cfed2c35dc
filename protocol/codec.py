"""Frames to messages and back, without state: the JSON-RPC 2.0 rules that need no memory.

Decoding never raises: whatever the text, each message becomes an event, and a message we
must refuse becomes `Invalid` carrying its error reply. The reply carries the request's id
whenever that id is readable (an int or a string), else null, as JSON-RPC requires. Rules
that need memory (duplicate ids) are applied by connection.py on top, and so is the
connection's profile (profile.py): `decode` takes the methods whose unknown params it ignores,
and `encode_output_lines` is the original CC-Executor's framing of output.
Encoding a message is encoding.py's (re-exported here), which a client can load alone.
"""

import base64
from collections.abc import Iterator
from typing import AnyStr, NamedTuple

import attrs
import orjson

from cc_executor.protocol.encoding import encode_batch as encode_batch
from cc_executor.protocol.encoding import encode_message as encode_message
from cc_executor.protocol.errors import (
    InvalidParams,
    InvalidRequest,
    JsonRpcError,
    LocalProtocolError,
    MethodNotFound,
    ParseError,
)
from cc_executor.protocol.events import (
    Batch,
    Event,
    Ignored,
    Invalid,
    NotificationReceived,
    Received,
    RequestReceived,
    Single,
)
from cc_executor.protocol.messages import (
    JSON,
    ErrorResponse,
    Id,
    Request,
)
from cc_executor.protocol.methods import (
    METHOD_OF,
    METHODS,
    OUTPUT_STREAMS,
    PROCESS_OUTPUT,
    Params,
)
from cc_executor.protocol.params import unstructure_params

_MEMBERS = frozenset({"jsonrpc", "id", "method", "params"})
# The most requests one batch may hold: every element's reply is kept until the array goes
# out, so a bound on the message's bytes alone would let one frame ask for millions.
MAX_BATCH = 1000
# orjson parses an integer past 64 bits as a float: such an id is refused as one.
ID_TYPE = "Invalid Request: id must be a string or an integer of at most 64 bits"


def decode(text: str, lenient: frozenset[str] = frozenset()) -> Received:
    """Read one text frame into events.

    Requests for a method in `lenient` have their unknown params left out (and named in
    `RequestReceived.ignored`) instead of refused.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Single(invalid(None, ParseError(f"Parse error: {exc}")))
    if type(value) is list:
        if not value:  # JSON-RPC: an empty array is one invalid request, not a batch
            return Single(invalid(None, InvalidRequest("Invalid Request: empty batch")))
        if len(value) > MAX_BATCH:
            too_many = f"Invalid Request: a batch of {len(value)} requests (at most {MAX_BATCH})"
            return Single(invalid(None, InvalidRequest(too_many)))
        return Batch(tuple(_decode_message(element, lenient) for element in value))
    if type(value) is dict:
        return Single(_decode_message(value, lenient))
    return Single(invalid(None, InvalidRequest("Invalid Request: expected an object or an array")))


def invalid(id_: Id | None, exc: JsonRpcError) -> Invalid:
    """The event refusing a message with `exc`."""
    return Invalid(ErrorResponse(id_, exc.error))


def _decode_message(value: JSON, lenient: frozenset[str]) -> Event:
    if type(value) is not dict:
        return invalid(None, InvalidRequest("Invalid Request: expected an object"))
    # Without "id", a notification. An id must be an int or a string (a bool is an int to
    # Python, never an id to JSON-RPC); `"id": null` is refused too, as its answer would be
    # indistinguishable from the answer to a message whose id could not be read.
    raw_id = value.get("id")
    reply_id = raw_id if isinstance(raw_id, int | str) and not isinstance(raw_id, bool) else None
    if "id" in value and reply_id is None:
        return invalid(None, InvalidRequest(ID_TYPE))
    try:
        method, raw = _envelope(value)
    except InvalidRequest as exc:
        return invalid(reply_id, exc)
    cls = METHODS.get(method)
    if reply_id is None:
        if cls is None:
            return Ignored(method, "Method not found")
        try:
            return NotificationReceived(method, _params(raw, cls))
        except InvalidParams as exc:
            return Ignored(method, exc.message)
    if cls is None:
        return invalid(reply_id, MethodNotFound(f"Method not found: {method}"))
    ignored: tuple[str, ...] = ()
    if method in lenient and type(raw) is dict:
        raw, ignored = _known_params(raw, cls)
    try:
        return RequestReceived(reply_id, method, _params(raw, cls), ignored)
    except InvalidParams as exc:
        return invalid(reply_id, exc)


def _known_params(
    raw: dict[str, JSON], cls: type[Params]
) -> tuple[dict[str, JSON], tuple[str, ...]]:
    """`raw` without the params `cls` does not have, and the names of those left out."""
    names = {field.name for field in attrs.fields(cls)}
    unknown = tuple(sorted(key for key in raw if key not in names))
    if not unknown:
        return raw, ()
    return {key: value for key, value in raw.items() if key in names}, unknown


def _envelope(value: dict[str, JSON]) -> tuple[str, JSON]:
    """The method name and raw params of a message, if its envelope is valid."""
    extra = value.keys() - _MEMBERS
    if extra:
        raise InvalidRequest(f"Invalid Request: unexpected members {sorted(extra)}")
    if value.get("jsonrpc") != "2.0":
        raise InvalidRequest('Invalid Request: jsonrpc must be "2.0"')
    method = value.get("method")
    if type(method) is not str:
        raise InvalidRequest("Invalid Request: method must be a string")
    raw = value.get("params", {})
    if type(raw) is not dict and type(raw) is not list:
        raise InvalidRequest("Invalid Request: params must be an object")
    return method, raw


def _params(raw: JSON, cls: type[Params]) -> Params:
    if type(raw) is not dict:
        raise InvalidParams("Invalid params: params must be an object, not an array")
    from cc_executor.protocol.converter import structure_params  # the daemon's side only

    return structure_params(raw, cls)


def encode_request(id_: Id, params: Params) -> str:
    """The text frame calling the method whose params `params` are (for clients and tests)."""
    return encode_message(Request(id_, METHOD_OF[type(params)], unstructure_params(params)))


class Utf8Text(NamedTuple):
    """A text frame's payload already encoded as UTF-8 (orjson writes bytes), held as it is:
    the transport sends `data` as a text frame with no round trip through ``str``."""

    data: bytes


def encode_output_utf8(
    run: str, seq: int, stream: str, data: bytes, max_frame: int | None = None
) -> Utf8Text:
    """`encode_output`'s frame as the UTF-8 bytes of the text (the daemon's hot path)."""
    _check_stream(stream)
    return Utf8Text(_chunk_output(run, seq, stream, data, max_frame, None))


def encode_output(
    run: str, seq: int, stream: str, data: bytes, max_frame: int | None = None
) -> str:
    """The complete `process.output` notification for a chunk of a run's output.

    `data` goes as text when it is valid UTF-8, else losslessly as base64 with
    `"encoding": "base64"`; never with replacement characters. With `max_frame`, text that
    would make the frame longer than `max_frame` bytes goes as base64 too: JSON writes a
    control character as six bytes (`\\u0000`), base64 any byte as four thirds of one.

    Raises:
        LocalProtocolError: `stream` is not "stdout" or "stderr", or even the base64
            frame exceeds `max_frame` (the chunk size and frame limit do not fit).
    """
    _check_stream(stream)
    return _chunk_output(run, seq, stream, data, max_frame, None).decode()


def encode_output_lines(
    run: str, seq: int, stream: str, data: bytes, max_frame: int | None = None
) -> list[str]:
    """The original CC-Executor's framing of a chunk: one `process.output` per line.

    Each frame carries one line of `data` with its newline (a last piece without one is a
    line not finished yet), `"truncated": false` (nothing is ever cut off) and the chunk's
    `seq`. Each line is encoded as `encode_output` encodes a chunk: text, or base64 when it
    is not UTF-8 or would not fit `max_frame`.

    Raises:
        LocalProtocolError: as `encode_output`.
    """
    _check_stream(stream)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # line by line: the lines that are text go as text
        return [
            _chunk_output(run, seq, stream, line, max_frame, False).decode()
            for line in _split_lines(data, b"\n")
        ]
    frames = []
    for line in _split_lines(text, "\n"):
        frame = _text_output(run, seq, stream, line, max_frame, False)
        if frame is None:
            frame = _base64_output(run, seq, stream, line.encode(), max_frame, False)
        frames.append(frame.decode())
    return frames


def _split_lines(data: AnyStr, newline: AnyStr) -> Iterator[AnyStr]:
    """Each line of `data` with its `newline`, then the rest if any (no other byte ends a line,
    unlike `splitlines`)."""
    start = 0
    while (end := data.find(newline, start) + 1) > 0:
        yield data[start:end]
        start = end
    if start < len(data):
        yield data[start:]


def _chunk_output(
    run: str, seq: int, stream: str, data: bytes, max_frame: int | None, truncated: bool | None
) -> bytes:
    """One frame for `data`: text when it is UTF-8 and fits, else base64 (the hot path: one
    decode, one dict, one dumps)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _base64_output(run, seq, stream, data, max_frame, truncated)
    frame = _text_output(run, seq, stream, text, max_frame, truncated)
    return (
        frame if frame is not None else _base64_output(run, seq, stream, data, max_frame, truncated)
    )


def _check_stream(stream: str) -> None:
    if stream not in OUTPUT_STREAMS:
        raise LocalProtocolError(f"unknown output stream {stream!r}")


def _text_output(
    run: str, seq: int, stream: str, text: str, max_frame: int | None, truncated: bool | None
) -> bytes | None:
    """The frame carrying `text` as is, or None if it would be longer than `max_frame`."""
    params: dict[str, object] = {"run": run, "seq": seq, "type": stream, "data": text}
    if truncated is not None:
        params["truncated"] = truncated
    frame = orjson.dumps({"jsonrpc": "2.0", "method": PROCESS_OUTPUT, "params": params})
    if max_frame is None or len(frame) <= max_frame:
        return frame
    return None


def _base64_output(
    run: str, seq: int, stream: str, data: bytes, max_frame: int | None, truncated: bool | None
) -> bytes:
    params: dict[str, object] = {
        "run": run,
        "seq": seq,
        "type": stream,
        "data": base64.b64encode(data).decode("ascii"),
        "encoding": "base64",
    }
    if truncated is not None:
        params["truncated"] = truncated
    frame = orjson.dumps({"jsonrpc": "2.0", "method": PROCESS_OUTPUT, "params": params})
    if max_frame is not None and len(frame) > max_frame:
        raise LocalProtocolError(f"{len(data)} bytes of output do not fit a {max_frame}-byte frame")
    return frame
