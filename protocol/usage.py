"""Usage demo of the protocol layer: `python -m cc_executor.protocol.usage`.

Drives a `ServerConnection` the way the daemon does — a request in, a reply and run events
out, the reply before the events it causes — and checks that bad input gets the right JSON-RPC
error. Asserts what it shows and ends with a unique run marker,
`USAGE_protocol_<UTC timestamp>`, for the review log.
"""

from datetime import UTC, datetime

import orjson

from cc_executor.protocol import (
    ErrorCode,
    ExecuteParams,
    Invalid,
    InvalidParams,
    LocalProtocolError,
    RequestReceived,
    ServerConnection,
    Single,
    encode_request,
    structure_params,
)
from cc_executor.protocol.notices import RunOutput
from cc_executor.protocol.results import Started


def main() -> None:
    conn = ServerConnection()

    # A client's execute request, built and encoded as the client library does.
    frame = encode_request(1, ExecuteParams(argv=("echo", "hi")))
    received = conn.receive(frame)
    assert isinstance(received, Single), received
    request = received.event
    assert isinstance(request, RequestReceived), request
    assert request.params == ExecuteParams(argv=("echo", "hi"))
    print("request :", frame)

    # The request starts run r1: its events may only follow the reply.
    conn.hold(request.id, "r1", "all")
    try:
        conn.send(RunOutput("r1", 1, "stdout", b"too early\n"))
    except LocalProtocolError as exc:
        print("held    :", exc)
    else:
        raise AssertionError("output went out before the reply that started its run")
    reply = orjson.loads(conn.respond(request.id, Started("r1", pid=42, pgid=42)))
    assert reply == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"status": "started", "run": "r1", "pid": 42, "pgid": 42},
    }
    print("reply   :", reply)

    # Output is byte-exact: UTF-8 as text, anything else as explicit base64.
    text = orjson.loads(conn.send(RunOutput("r1", 1, "stdout", b"hi\n")))["params"]
    binary = orjson.loads(conn.send(RunOutput("r1", 2, "stdout", b"\xff\xfe")))["params"]
    assert text["data"] == "hi\n", text
    assert "encoding" not in text, text
    assert binary["encoding"] == "base64", binary
    assert binary["data"] == "//4=", binary
    print("output  :", text, binary)

    # Answering twice is our own bug, and the connection refuses it.
    try:
        conn.respond(request.id, Started("r1", pid=42, pgid=42))
    except LocalProtocolError as exc:
        print("refused :", exc)
    else:
        raise AssertionError("a second answer to id 1 was accepted")

    # The peer's mistakes become the JSON-RPC error to send back.
    bad = conn.receive("{not json")
    assert isinstance(bad, Single), bad
    assert isinstance(bad.event, Invalid), bad
    assert bad.event.reply.error.code == ErrorCode.PARSE_ERROR, bad
    wrong = conn.receive('{"jsonrpc":"2.0","id":2,"method":"execute","params":{"argv":"rm -rf"}}')
    assert isinstance(wrong, Single), wrong
    assert isinstance(wrong.event, Invalid), wrong
    error = wrong.event.reply.error
    assert error.code == ErrorCode.INVALID_PARAMS, error
    assert error.data == ["expected array @ $.params.argv"], error
    print("errors  :", bad.event.reply.error.code, error.code, error.data)

    # The strict converter never coerces: "7" is not a timeout.
    refused: InvalidParams | None = None
    try:
        structure_params({"argv": ["sleep", "1"], "timeout": "7"}, ExecuteParams)
    except InvalidParams as exc:
        refused = exc
    assert refused is not None, '"7" was accepted as a timeout'
    assert refused.data == ["expected number @ $.params.timeout"], refused.data
    print("strict  :", refused.data)

    print(f"USAGE_protocol_{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}")


if __name__ == "__main__":
    main()
