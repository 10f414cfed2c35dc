"""Frames in, events out; messages in, frames out: round trips, malformed input, output."""

import base64
import string
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cc_executor.protocol.codec import (
    decode,
    encode_batch,
    encode_message,
    encode_output,
    encode_request,
)
from cc_executor.protocol.connection import ServerConnection
from cc_executor.protocol.errors import ErrorCode, LocalProtocolError
from cc_executor.protocol.events import (
    Batch,
    Event,
    Ignored,
    Invalid,
    NotificationReceived,
    RequestReceived,
    Single,
)
from cc_executor.protocol.messages import (
    ErrorObject,
    ErrorResponse,
    Notification,
    Request,
    Response,
)
from cc_executor.protocol.methods import Params
from cc_executor.protocol.params import (
    SIGNALS,
    ControlParams,
    ExecuteParams,
    ListParams,
    SignalParams,
    StatusParams,
    StdinParams,
)

# -- strategies for valid params ---------------------------------------------------------

# Text that JSON can carry (no lone surrogates) and execve accepts (no NUL).
texts = st.text(st.characters(codec="utf-8", exclude_characters="\0"))
nonblank = texts.filter(lambda s: s.strip() != "")
env_keys = texts.filter(lambda s: s != "" and "=" not in s)
seconds = st.none() | st.floats(min_value=0, exclude_min=True, allow_infinity=False)
ids = st.integers(min_value=-(2**63), max_value=2**64 - 1) | texts


@st.composite
def execute_params(draw: st.DrawFn) -> ExecuteParams:
    """Any valid ExecuteParams."""
    common: dict[str, Any] = {
        "cwd": draw(st.none() | texts),
        "env": draw(st.dictionaries(env_keys, texts, max_size=4)),
        "stdin": draw(st.sampled_from(["null", "pipe"])),
        "timeout": draw(seconds),
        "idle_timeout": draw(seconds),
    }
    if draw(st.booleans()):
        argv = draw(st.lists(texts, min_size=1, max_size=5).filter(lambda a: a[0] != ""))
        return ExecuteParams(argv=tuple(argv), **common)
    return ExecuteParams(command=draw(nonblank), shell=draw(st.booleans()), **common)


@st.composite
def stdin_params(draw: st.DrawFn) -> StdinParams:
    """Any valid StdinParams, text or base64."""
    run, eof = draw(texts), draw(st.booleans())
    if draw(st.booleans()):
        data = base64.b64encode(draw(st.binary(max_size=64))).decode()
        return StdinParams(run=run, data=data, encoding="base64", eof=eof)
    return StdinParams(run=run, data=draw(texts), eof=eof)


signal_names = st.sampled_from(sorted(SIGNALS)).flatmap(
    lambda s: st.sampled_from([s, s.removeprefix("SIG")])
)
params_objects: st.SearchStrategy[Params] = st.one_of(
    execute_params(),
    st.builds(
        ControlParams,
        type=st.sampled_from(["PAUSE", "RESUME", "CANCEL"]),
        run=st.none() | texts,
    ),
    st.builds(SignalParams, run=texts, signal=signal_names),
    stdin_params(),
    st.builds(StatusParams, run=st.none() | texts),
    st.just(ListParams()),
)


def receive_one(text: str) -> Event:
    """The single event a fresh connection makes of `text`."""
    received = ServerConnection().receive(text)
    assert isinstance(received, Single)
    return received.event


# -- round trips ---------------------------------------------------------------------


@given(ids, params_objects)
def test_request_round_trip(id_: int | str, params: Params) -> None:
    event = receive_one(encode_request(id_, params))
    assert isinstance(event, RequestReceived)
    assert event.id == id_
    assert type(event.id) is type(id_)
    assert event.params == params


@given(params_objects)
def test_notification_round_trip(params: Params) -> None:
    raw = orjson.loads(encode_request(1, params))
    del raw["id"]
    assert receive_one(orjson.dumps(raw).decode()) == NotificationReceived(raw["method"], params)


def test_params_may_be_omitted() -> None:
    event = receive_one('{"jsonrpc": "2.0", "id": 1, "method": "list"}')
    assert event == RequestReceived(1, "list", ListParams())
    event = receive_one('{"jsonrpc": "2.0", "id": 1, "method": "status", "params": {}}')
    assert event == RequestReceived(1, "status", StatusParams())


def test_original_cc_executor_execute() -> None:
    text = '{"jsonrpc":"2.0","id":"a","method":"execute","params":{"command":"echo hi"}}'
    assert receive_one(text) == RequestReceived("a", "execute", ExecuteParams(command="echo hi"))


# -- every malformed input yields the right error -------------------------------------


_REMOVE = object()


def request(**members: Any) -> str:
    """A request frame: a valid `list` call unless members override or remove (_REMOVE) parts."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 7, "method": "list"}
    for key, value in members.items():
        if value is _REMOVE:
            del message[key]
        else:
            message[key] = value
    return orjson.dumps(message).decode()


def execute(**params: Any) -> str:
    """An execute request with `params`."""
    return request(method="execute", params=params)


PARSE, REQUEST, METHOD, PARAMS = -32700, -32600, -32601, -32602

MALFORMED = [
    # (frame, code, reply id, a fragment of the error's data or message)
    ("not json", PARSE, None, "Parse error"),
    ("", PARSE, None, "Parse error"),
    ('{"jsonrpc": "2.0", "id": 1, "method": "list"', PARSE, None, "Parse error"),
    ("NaN", PARSE, None, "Parse error"),
    ("[" * 2000 + "]" * 2000, PARSE, None, "Parse error"),
    ("42", REQUEST, None, "object or an array"),
    ('"execute"', REQUEST, None, "object or an array"),
    ("null", REQUEST, None, "object or an array"),
    ("true", REQUEST, None, "object or an array"),
    ("[]", REQUEST, None, "empty batch"),
    ("[" + ",".join(["{}"] * 1001) + "]", REQUEST, None, "a batch of 1001 requests (at most 1000)"),
    (request(jsonrpc="1.0"), REQUEST, 7, "jsonrpc"),
    (request(jsonrpc=2.0), REQUEST, 7, "jsonrpc"),
    (request(jsonrpc=_REMOVE), REQUEST, 7, "jsonrpc"),
    (request(id=1.5), REQUEST, None, "id must be"),
    (request(id=1.0), REQUEST, None, "id must be"),
    (request(id=True), REQUEST, None, "id must be"),
    (request(id={}), REQUEST, None, "id must be"),
    (request(id=[1]), REQUEST, None, "id must be"),
    (request(id=None), REQUEST, None, "id must be"),
    # orjson reads an integer beyond 64 bits as a float
    ('{"jsonrpc": "2.0", "id": 1180591620717411303424, "method": "list"}', REQUEST, None, "id"),
    (request(method=5), REQUEST, 7, "method must be"),
    (request(method=None), REQUEST, 7, "method must be"),
    (request(method=_REMOVE), REQUEST, 7, "method must be"),
    (request(extra=1), REQUEST, 7, "unexpected members ['extra']"),
    (request(result={}), REQUEST, 7, "unexpected members ['result']"),
    (request(params="x"), REQUEST, 7, "params must be an object"),
    (request(params=5), REQUEST, 7, "params must be an object"),
    (request(params=None), REQUEST, 7, "params must be an object"),
    (request(method="nope"), METHOD, 7, "Method not found: nope"),
    (request(method="List"), METHOD, 7, "Method not found: List"),
    (request(params=[]), PARAMS, 7, "not an array"),
    (request(method="execute", params=["ls"]), PARAMS, 7, "not an array"),
    (request(params={"x": 1}), PARAMS, 7, "unexpected fields (x) @ $.params"),
    (execute(), PARAMS, 7, "exactly one of command and argv is required @ $.params"),
    (execute(command="ls", argv=["ls"]), PARAMS, 7, "exactly one of command and argv"),
    (execute(argv="rm -rf"), PARAMS, 7, "expected array @ $.params.argv"),
    (execute(argv=[]), PARAMS, 7, "must not be empty @ $.params.argv"),
    (execute(argv=["ls", 5]), PARAMS, 7, "expected string @ $.params.argv[1]"),
    (execute(command=["ls"]), PARAMS, 7, "expected string @ $.params.command"),
    (execute(command="  "), PARAMS, 7, "must not be empty @ $.params.command"),
    (execute(command="ls\0"), PARAMS, 7, "NUL byte @ $.params.command"),
    (execute(argv=["ls", "\0"]), PARAMS, 7, "NUL byte @ $.params.argv[1]"),
    (execute(argv=["ls"], cwd="/\0"), PARAMS, 7, "NUL byte @ $.params.cwd"),
    (execute(argv=["ls"], env={"A": "\0"}), PARAMS, 7, "NUL byte @ $.params.env['A']"),
    (execute(argv=["ls"], env={"A\0": "1"}), PARAMS, 7, "NUL byte @ $.params.env"),
    (execute(argv=["ls"], env={"A=1": "1"}), PARAMS, 7, "'=' @ $.params.env['A=1']"),
    (execute(argv=["ls"], env={"A": 1}), PARAMS, 7, "expected string @ $.params.env['A']"),
    (execute(argv=["ls"], env=["A=1"]), PARAMS, 7, "expected object @ $.params.env"),
    (execute(argv=["ls"], shell=True), PARAMS, 7, "only allowed with command"),
    (execute(command="ls", shell="yes"), PARAMS, 7, "expected boolean @ $.params.shell"),
    (execute(command="ls", shell=1), PARAMS, 7, "expected boolean @ $.params.shell"),
    (execute(command="ls", timeout="7"), PARAMS, 7, "expected number @ $.params.timeout"),
    (execute(command="ls", timeout=True), PARAMS, 7, "expected number @ $.params.timeout"),
    (execute(command="ls", timeout=0), PARAMS, 7, "positive number of seconds @ $.params.timeout"),
    (execute(command="ls", timeout=-1), PARAMS, 7, "positive number of seconds"),
    (execute(command="ls", idle_timeout=0.0), PARAMS, 7, "@ $.params.idle_timeout"),
    (execute(command="ls", stdin="file"), PARAMS, 7, "expected one of 'null', 'pipe'"),
    (execute(command="ls", sudo=True), PARAMS, 7, "unexpected fields (sudo) @ $.params"),
    (request(method="control", params={"type": "pause"}), PARAMS, 7, "@ $.params.type"),
    (request(method="control", params={}), PARAMS, 7, "required field missing @ $.params.type"),
    (request(method="control", params={"type": "CANCEL", "run": 1}), PARAMS, 7, "$.params.run"),
    (request(method="signal", params={"run": "r", "signal": "usr1"}), PARAMS, 7, "unknown signal"),
    (request(method="signal", params={"run": "r", "signal": 10}), PARAMS, 7, "$.params.signal"),
    (request(method="signal", params={"run": "r"}), PARAMS, 7, "missing @ $.params.signal"),
    (
        request(method="stdin", params={"run": "r", "data": "!", "encoding": "base64"}),
        PARAMS,
        7,
        "not valid base64 @ $.params.data",
    ),
    (request(method="stdin", params={"run": "r", "eof": "yes"}), PARAMS, 7, "$.params.eof"),
    (request(method="status", params={"run": 5}), PARAMS, 7, "expected string @ $.params.run"),
    (request(id="x", method="nope"), METHOD, "x", "nope"),
]


@pytest.mark.parametrize(("text", "code", "id_", "fragment"), MALFORMED)
def test_malformed_input_yields_the_right_error(
    text: str, code: int, id_: int | str | None, fragment: str
) -> None:
    event = receive_one(text)
    assert isinstance(event, Invalid)
    assert event.reply.id == id_
    assert event.reply.error.code == code
    assert fragment in event.reply.error.message
    if code == PARAMS and "@" in fragment:
        problems = event.reply.error.data
        assert isinstance(problems, list)
        assert any(isinstance(p, str) and fragment in p for p in problems)
    wire = orjson.loads(encode_message(event.reply))
    assert wire["id"] == id_
    assert wire["error"]["code"] == code


def test_mixed_batch_gives_one_event_per_element() -> None:
    text = orjson.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "list"},
            5,
            {"jsonrpc": "1.0", "id": 2, "method": "list"},
            {"jsonrpc": "2.0", "method": "list"},
            {"jsonrpc": "2.0", "method": "no.such.notification"},
            {"jsonrpc": "2.0", "id": 3, "method": "nope"},
            [],
        ]
    ).decode()
    received = ServerConnection().receive(text)
    assert isinstance(received, Batch)
    events = received.events
    assert len(events) == 7
    assert events[0] == RequestReceived(1, "list", ListParams())
    assert isinstance(events[1], Invalid)
    assert (events[1].reply.id, events[1].reply.error.code) == (None, REQUEST)
    assert isinstance(events[2], Invalid)
    assert (events[2].reply.id, events[2].reply.error.code) == (2, REQUEST)
    assert events[3] == NotificationReceived("list", ListParams())
    assert events[4] == Ignored("no.such.notification", "Method not found")
    assert isinstance(events[5], Invalid)
    assert (events[5].reply.id, events[5].reply.error.code) == (3, METHOD)
    assert isinstance(events[6], Invalid)
    assert (events[6].reply.id, events[6].reply.error.code) == (None, REQUEST)


def test_a_batch_of_one_is_still_a_batch() -> None:
    received = ServerConnection().receive('[{"jsonrpc": "2.0", "id": 1, "method": "list"}]')
    assert received == Batch((RequestReceived(1, "list", ListParams()),))


def test_notifications_with_bad_params_are_ignored_not_answered() -> None:
    event = receive_one('{"jsonrpc": "2.0", "method": "execute", "params": {"argv": "ls"}}')
    assert isinstance(event, Ignored)
    assert "expected array @ $.params.argv" in event.reason
    event = receive_one('{"jsonrpc": "2.0", "method": "execute", "params": ["ls"]}')
    assert isinstance(event, Ignored)


# -- junk never crashes ---------------------------------------------------------------

CODES = {int(code) for code in ErrorCode}
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        *("command", "argv", "shell", "cwd", "env", "stdin", "timeout", "idle_timeout"),
        *("type", "run", "signal", "data", "encoding", "eof", "x"),
    ]
)
# Messages that get past the envelope often enough to reach the params checks.
near_messages = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.just("2.0") | json_values,
        "id": ids | json_values,
        "method": st.sampled_from(["execute", "control", "signal", "stdin", "status", "list"])
        | json_values,
        "params": st.dictionaries(field_names, json_values, max_size=5) | json_values,
    },
)


def check_events(events: tuple[Event, ...]) -> None:
    """Every event is well-formed, and every refusal encodes with a known code."""
    for event in events:
        if isinstance(event, Invalid):
            assert event.reply.error.code in CODES
            orjson.loads(encode_message(event.reply))
        else:
            assert isinstance(event, RequestReceived | NotificationReceived | Ignored)


@given(st.text())
def test_arbitrary_text_never_crashes(text: str) -> None:
    check_events(ServerConnection().receive(text).events)


@given(json_values | st.lists(near_messages, max_size=4) | near_messages)
def test_arbitrary_json_never_crashes(value: object) -> None:
    received = ServerConnection().receive(orjson.dumps(value).decode())
    check_events(received.events)
    if isinstance(value, list) and value:
        assert isinstance(received, Batch)
        assert len(received.events) == len(value)


def test_decode_is_stateless() -> None:
    text = '{"jsonrpc": "2.0", "id": 1, "method": "list"}'
    assert decode(text) == decode(text) == Single(RequestReceived(1, "list", ListParams()))


# -- encoding -------------------------------------------------------------------------


def test_encode_messages() -> None:
    assert orjson.loads(encode_message(Response(1, {"status": "started", "pid": 9}))) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"status": "started", "pid": 9},
    }
    error = ErrorResponse("a", ErrorObject(-32002, "no run r"))
    assert orjson.loads(encode_message(error)) == {
        "jsonrpc": "2.0",
        "id": "a",
        "error": {"code": -32002, "message": "no run r"},  # data omitted when None
    }
    with_data = ErrorResponse(None, ErrorObject(-32600, "dup", {"duplicate_id": 1}))
    assert orjson.loads(encode_message(with_data))["error"]["data"] == {"duplicate_id": 1}
    assert orjson.loads(encode_message(Notification("connected", {"version": "1"}))) == {
        "jsonrpc": "2.0",
        "method": "connected",
        "params": {"version": "1"},
    }
    assert orjson.loads(encode_message(Request(3, "list", {}))) == {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "list",
        "params": {},
    }


def test_encode_batch() -> None:
    text = encode_batch([Response(1, {}), ErrorResponse(None, ErrorObject(-32600, "bad"))])
    assert [reply.get("id") for reply in orjson.loads(text)] == [1, None]
    with pytest.raises(LocalProtocolError):
        encode_batch([])


def test_unserialisable_values_are_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        encode_message(Response(1, {"pid": object()}))
    with pytest.raises(LocalProtocolError):
        encode_message(Notification("connected", {1: "non-str key"}))  # type: ignore[dict-item]


def decode_output(text: str) -> tuple[dict[str, Any], bytes]:
    """The params of an output notification and the bytes it carries."""
    message = orjson.loads(text)
    assert message["jsonrpc"] == "2.0"
    assert message["method"] == "process.output"
    params: dict[str, Any] = message["params"]
    if params.get("encoding") == "base64":
        return params, base64.b64decode(params["data"], validate=True)
    return params, params["data"].encode("utf-8")


@given(st.binary(), st.sampled_from(["stdout", "stderr"]), texts, st.integers(1, 2**53))
def test_encode_output_is_lossless(data: bytes, stream: str, run: str, seq: int) -> None:
    params, carried = decode_output(encode_output(run, seq, stream, data))
    assert carried == data
    assert (params["run"], params["seq"], params["type"]) == (run, seq, stream)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        assert params["encoding"] == "base64"
    else:
        assert "encoding" not in params


@given(texts)
def test_utf8_output_stays_text(text: str) -> None:
    params, _ = decode_output(encode_output("r", 1, "stdout", text.encode()))
    assert params["data"] == text
    assert set(params) == {"run", "seq", "type", "data"}


@pytest.mark.parametrize(
    "data",
    [
        b"\xed\xa0\x80",  # an encoded surrogate: Python's strict UTF-8 refuses it, as it must
        b"\xc0\xaf",  # an overlong encoding
        b"ok\xff",
        "é".encode()[:1],  # a character cut in half at a chunk boundary
    ],
)
def test_invalid_utf8_goes_as_base64(data: bytes) -> None:
    params, carried = decode_output(encode_output("r", 1, "stderr", data))
    assert params["encoding"] == "base64"
    assert carried == data


@given(st.binary(max_size=2000), st.integers(min_value=3000, max_value=20000))
def test_encode_output_fits_the_frame_limit(data: bytes, max_frame: int) -> None:
    # 2000 bytes of base64 and the envelope always fit in 3000; text may not.
    text = encode_output("r", 1, "stdout", data, max_frame)
    assert len(text.encode()) <= max_frame
    assert decode_output(text)[1] == data


def test_output_stream_must_be_stdout_or_stderr() -> None:
    with pytest.raises(LocalProtocolError):
        encode_output("r", 1, "stdin", b"x")


def test_large_output_chunk() -> None:
    data = (string.printable.encode() * 40000)[:4_000_000]
    params, carried = decode_output(encode_output("r", 1, "stdout", data))
    assert carried == data
    assert "encoding" not in params
