"""Messages to text frames: the encoding half of the codec, apart from its decoding.

Encoding needs only the message classes: a client that sends requests and never decodes one
(ccx) loads this, not codec.py's decoder with the method table and every params class behind
it. Encoding builds plain dicts and lets orjson write them; a value orjson cannot write is our
bug, reported as LocalProtocolError.
"""

from collections.abc import Mapping, Sequence

import orjson

from cc_executor.protocol.errors import LocalProtocolError
from cc_executor.protocol.messages import (
    ErrorResponse,
    Message,
    Notification,
    Reply,
    Request,
    Response,
)


def encode_message(message: Message) -> str:
    """The text frame for one message."""
    return _dumps(_wire(message))


def encode_batch(replies: Sequence[Reply]) -> str:
    """The text frame answering a batch.

    Raises:
        LocalProtocolError: `replies` is empty (JSON-RPC: send nothing instead).
    """
    if not replies:
        raise LocalProtocolError("a batch reply must not be empty: send nothing instead")
    return _dumps([_wire(reply) for reply in replies])


def _dumps(value: object) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise LocalProtocolError(f"not JSON-serialisable: {exc}") from exc


def _object(value: Mapping[str, object]) -> Mapping[str, object]:
    # orjson writes dicts only; callers may hand us any mapping.
    return value if type(value) is dict else dict(value)


def _wire(message: Message) -> dict[str, object]:
    match message:
        case Response(id=id_, result=result):
            return {"jsonrpc": "2.0", "id": id_, "result": _object(result)}
        case ErrorResponse(id=id_, error=error):
            body: dict[str, object] = {"code": error.code, "message": error.message}
            if error.data is not None:
                body["data"] = error.data
            return {"jsonrpc": "2.0", "id": id_, "error": body}
        case Notification(method=method, params=params):
            return {"jsonrpc": "2.0", "method": method, "params": _object(params)}
        case Request(id=id_, method=method, params=params):
            return {"jsonrpc": "2.0", "id": id_, "method": method, "params": _object(params)}
