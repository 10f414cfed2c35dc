"""The MCP protocol layer: eras, version negotiation, the connection's rules, tool arguments."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cc_executor.protocol import LocalProtocolError
from cc_executor.protocol.mcp import (
    CLIENT_CAPABILITIES_KEY,
    HANDSHAKE_VERSIONS,
    LATEST_HANDSHAKE,
    PROTOCOL_VERSION_KEY,
    SUPPORTED_VERSIONS,
    TASKS_EXTENSION,
    McpIgnored,
    McpInvalid,
    McpNotification,
    McpRequest,
    decode_mcp,
    negotiate,
    tool_result,
)
from cc_executor.protocol.mcp_connection import McpConnection
from cc_executor.protocol.mcp_tools import (
    TOOLS,
    ControlArgs,
    ReadOutputArgs,
    RunTool,
    parse_arguments,
    tool_list,
)


def frame(**message: Any) -> str:
    return orjson.dumps({"jsonrpc": "2.0", **message}).decode()


def modern_meta(version: str = "2026-07-28", **extra: Any) -> dict[str, Any]:
    return {PROTOCOL_VERSION_KEY: version, CLIENT_CAPABILITIES_KEY: {}, **extra}


def error_of(text: str) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(text)
    return value


# -- eras and versions -------------------------------------------------------------------


@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
def test_the_handshake_agrees_to_every_version_we_speak(version: str) -> None:
    assert negotiate(version) == version


@given(st.text().filter(lambda v: v not in HANDSHAKE_VERSIONS) | st.integers() | st.none())
def test_the_handshake_offers_our_latest_for_anything_else(requested: object) -> None:
    assert negotiate(requested) == LATEST_HANDSHAKE


def test_a_request_with_a_version_in_meta_is_modern() -> None:
    caps: dict[str, Any] = {"extensions": {TASKS_EXTENSION: {}}}
    meta = {PROTOCOL_VERSION_KEY: "2026-07-28", CLIENT_CAPABILITIES_KEY: caps, "progressToken": 7}
    event = decode_mcp(frame(id=1, method="tools/call", params={"_meta": meta}))
    assert isinstance(event, McpRequest)
    assert (event.era, event.version, event.progress_token) == ("modern", "2026-07-28", 7)
    assert event.wants_tasks_extension


@given(st.text(min_size=1).filter(lambda v: v != "2026-07-28"))
def test_an_unknown_modern_version_is_32022_with_supported(version: str) -> None:
    event = decode_mcp(
        frame(id="a", method="server/discover", params={"_meta": modern_meta(version)})
    )
    assert isinstance(event, McpInvalid)
    assert event.reply.id == "a"
    assert event.reply.error.code == -32022
    assert event.reply.error.data == {"requested": version, "supported": list(SUPPORTED_VERSIONS)}


@pytest.mark.parametrize(
    ("method", "meta"),
    [
        ("resources/list", {}),
        ("prompts/list", {}),
        ("server/discover", {}),  # discover without the modern envelope is not a method
        ("initialize", modern_meta()),  # the handshake is gone in the modern era
        ("ping", modern_meta()),
        ("tasks/result", modern_meta()),
        ("logging/setLevel", {}),
    ],
)
def test_unknown_methods_are_32601_at_once(method: str, meta: dict[str, Any]) -> None:
    event = decode_mcp(frame(id=3, method=method, params={"_meta": meta}))
    assert isinstance(event, McpInvalid)
    assert (event.reply.id, event.reply.error.code) == (3, -32601)


@given(
    st.one_of(
        st.text(),
        st.binary().map(lambda b: b.decode("latin-1")),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
            lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        ).map(lambda v: orjson.dumps(v).decode()),
    )
)
def test_decoding_never_raises(text: str) -> None:
    event = decode_mcp(text)
    assert isinstance(event, McpRequest | McpNotification | McpInvalid | McpIgnored)


def test_batches_are_refused_and_responses_ignored() -> None:
    batch = decode_mcp("[" + frame(id=1, method="ping") + "]")
    assert isinstance(batch, McpInvalid)
    assert batch.reply.error.code == -32600
    assert isinstance(decode_mcp(frame(id=1, result={})), McpIgnored)


# -- the connection's rules ----------------------------------------------------------------


def test_each_id_is_answered_once_and_only_ids_received() -> None:
    conn = McpConnection()
    assert isinstance(conn.receive(frame(id=1, method="ping")), McpRequest)
    text = conn.respond(1, {})
    assert error_of(text) == {"jsonrpc": "2.0", "id": 1, "result": {}}
    with pytest.raises(LocalProtocolError):
        conn.respond(1, {})
    with pytest.raises(LocalProtocolError):
        conn.respond(2, {})


def test_a_duplicate_pending_id_is_refused_with_null_id() -> None:
    conn = McpConnection()
    conn.receive(frame(id=1, method="ping"))
    event = conn.receive(frame(id=1, method="ping"))
    assert isinstance(event, McpInvalid)
    assert event.reply.id is None
    assert event.reply.error.data == {"duplicate_id": 1}
    assert conn.pending_ids == {1}


def test_modern_results_carry_result_type() -> None:
    conn = McpConnection()
    conn.receive(frame(id=1, method="tools/list", params={"_meta": modern_meta()}))
    assert error_of(conn.respond(1, {"tools": []}))["result"]["resultType"] == "complete"
    conn.receive(frame(id=2, method="tools/list"))
    assert "resultType" not in error_of(conn.respond(2, {"tools": []}))["result"]


def test_progress_only_for_issued_tokens_increasing_and_before_the_response() -> None:
    conn = McpConnection()
    with pytest.raises(LocalProtocolError):
        conn.progress("t", 1.0)
    conn.receive(frame(id=1, method="tools/call", params={"_meta": {"progressToken": "t"}}))
    assert conn.progress_token(1) == "t"
    sent = error_of(conn.progress("t", 1.0, "out"))
    assert sent["params"] == {"progressToken": "t", "progress": 1.0, "message": "out"}
    with pytest.raises(LocalProtocolError):
        conn.progress("t", 1.0)
    assert conn.next_progress("t", 0.5) > 1.0
    conn.progress("t", conn.next_progress("t", 0.5))
    conn.respond(1, {})
    with pytest.raises(LocalProtocolError):
        conn.progress("t", 99.0)


@pytest.mark.parametrize("token", ["t", 7, 1.5, -2])
def test_a_progress_token_is_a_string_or_any_number_and_comes_back_as_sent(token: Any) -> None:
    """MCP's ProgressToken is "string | number": 1.5 is one (it was refused, and with it the
    whole call)."""
    conn = McpConnection()
    conn.receive(frame(id=1, method="tools/call", params={"_meta": {"progressToken": token}}))
    assert conn.progress_token(1) == token
    assert error_of(conn.progress(token, 1.0))["params"]["progressToken"] == token


@pytest.mark.parametrize("token", [True, [], {}])
def test_a_progress_token_that_is_no_string_or_number_is_refused(token: Any) -> None:
    conn = McpConnection()
    refused = conn.receive(
        frame(id=1, method="tools/call", params={"_meta": {"progressToken": token}})
    )
    assert isinstance(refused, McpInvalid)
    assert refused.reply.error.code == -32602


def test_an_abandoned_request_gets_neither_answer_nor_progress() -> None:
    conn = McpConnection()
    conn.receive(frame(id=5, method="tools/call", params={"_meta": {"progressToken": 5}}))
    conn.abandon(5)
    conn.abandon(5)  # a race with the run's end is harmless
    with pytest.raises(LocalProtocolError):
        conn.progress(5, 1.0)
    with pytest.raises(LocalProtocolError):
        conn.respond(5, {})


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["receive", "respond", "progress", "abandon"]),
            st.integers(0, 3),
            st.floats(0, 10, allow_nan=False),
        ),
        max_size=40,
    )
)
def test_any_sequence_keeps_every_invariant(ops: list[tuple[str, int, float]]) -> None:
    """Whatever we try, the frames that get out obey the rules (the rest raise)."""
    conn = McpConnection()
    answered: set[int] = set()
    last: dict[int, float] = {}
    for op, n, value in ops:
        if op == "receive":
            params = {"_meta": {"progressToken": f"t{n}"}}
            event = conn.receive(frame(id=n, method="tools/call", params=params))
            if isinstance(event, McpRequest):
                answered.discard(n)
                last.pop(n, None)
            continue
        try:
            if op == "respond":
                conn.respond(n, {})
                assert n not in answered
                answered.add(n)
            elif op == "progress":
                conn.progress(f"t{n}", value)
                assert n not in answered
                assert value > last.get(n, -1.0)
                last[n] = value
            else:
                conn.abandon(n)
                answered.add(n)
        except LocalProtocolError:
            pass


# -- tools -------------------------------------------------------------------------------


def test_tool_arguments_are_strict_and_errors_name_the_field() -> None:
    parsed = parse_arguments("execute", {"argv": ["echo", "hi"], "wait": False, "durable": True})
    assert isinstance(parsed, RunTool)
    assert parsed.durable
    assert not parsed.wait
    assert parse_arguments("execute", {"command": "ls", "timeout": "7"}) == [
        "expected number @ $.timeout"
    ]
    assert parse_arguments("execute", {"argv": "rm -rf"}) == ["expected array @ $.argv"]
    assert parse_arguments("execute", {}) == ["exactly one of command and argv is required @ $"]
    assert parse_arguments("control", {"run": "r", "action": "signal"}) != []
    args = parse_arguments("control", {"run": "r", "action": "signal", "signal": "USR1"})
    assert isinstance(args, ControlArgs)
    assert args.signal_name == "SIGUSR1"
    assert parse_arguments("read_output", {"run": "r", "from_seq": 3}) == ReadOutputArgs("r", 3)
    assert parse_arguments("read_output", {"run": "r", "max_bytes": 0}) != []
    assert parse_arguments("nope", {}) == ["unknown tool 'nope'"]
    assert parse_arguments("list", ["x"]) == ["arguments must be an object"]


def test_tool_list_follows_the_version() -> None:
    old: list[Any] = tool_list("2024-11-05")
    new: list[Any] = tool_list("2025-11-25")
    assert [t["name"] for t in new] == [spec.name for spec in TOOLS]
    assert all("outputSchema" not in t and "execution" not in t for t in old)
    assert all("outputSchema" in t and "execution" in t for t in new)
    assert "structuredContent" not in tool_result(
        "x", {"a": 1}, is_error=False, version="2025-03-26"
    )
    assert tool_result("x", {"a": 1}, is_error=False, version=None)["structuredContent"] == {"a": 1}
