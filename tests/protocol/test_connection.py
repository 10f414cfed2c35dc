"""ServerConnection: each id answered exactly once; run events contiguous, none after the end."""

from typing import Any

import orjson
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cc_executor.protocol.connection import ServerConnection
from cc_executor.protocol.errors import InvalidState, LocalProtocolError, ParseError, RunNotFound
from cc_executor.protocol.events import (
    Batch,
    Event,
    Invalid,
    NotificationReceived,
    RequestReceived,
    Single,
)
from cc_executor.protocol.messages import Id, Reply, Response
from cc_executor.protocol.params import ControlParams, ListParams


def call(id_: object, method: str = "list", params: dict[str, Any] | None = None) -> str:
    """A request frame."""
    return orjson.dumps(
        {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or {}}
    ).decode()


def only(conn: ServerConnection, text: str) -> Event:
    """The one event of a single-message frame."""
    received = conn.receive(text)
    assert isinstance(received, Single)
    assert received.events == (received.event,)
    return received.event


def wire(text: str) -> dict[str, Any]:
    """A frame as JSON."""
    value: dict[str, Any] = orjson.loads(text)
    return value


# -- ids -----------------------------------------------------------------------------


def test_request_then_response() -> None:
    conn = ServerConnection()
    assert only(conn, call(1)) == RequestReceived(1, "list", ListParams())
    assert set(conn.pending_ids) == {1}
    assert wire(conn.respond(1, {"runs": []})) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"runs": []},
    }
    assert set(conn.pending_ids) == set()


def test_error_response() -> None:
    conn = ServerConnection()
    only(conn, call("a", "control", {"type": "PAUSE"}))
    reply = wire(conn.respond_error("a", InvalidState("run r1 is not running", {"run": "r1"})))
    assert reply == {
        "jsonrpc": "2.0",
        "id": "a",
        "error": {"code": -32005, "message": "run r1 is not running", "data": {"run": "r1"}},
    }


def test_answering_twice_or_unreceived_is_our_bug() -> None:
    conn = ServerConnection()
    only(conn, call(1))
    conn.respond(1, {})
    with pytest.raises(LocalProtocolError):
        conn.respond(1, {})
    with pytest.raises(LocalProtocolError):
        conn.respond_error(2, RunNotFound("r"))
    with pytest.raises(LocalProtocolError):
        conn.make_response("1", {})  # "1" is not 1


def test_duplicate_in_flight_is_refused_without_disturbing_the_first() -> None:
    conn = ServerConnection()
    only(conn, call(5))
    event = only(conn, call(5, "control", {"type": "CANCEL"}))
    assert isinstance(event, Invalid)
    assert event.reply.id is None
    assert (event.reply.error.code, event.reply.error.data) == (-32600, {"duplicate_id": 5})
    assert set(conn.pending_ids) == {5}
    assert wire(conn.respond(5, {"ok": 1}))["id"] == 5


def test_invalid_message_with_a_pending_id_is_a_duplicate() -> None:
    # Replying "method not found" with id 5 would look like the answer to the first 5.
    conn = ServerConnection()
    only(conn, call(5))
    event = only(conn, call(5, "nope"))
    assert isinstance(event, Invalid)
    assert event.reply.id is None
    assert event.reply.error.data == {"duplicate_id": 5}


def test_invalid_requests_are_never_pending() -> None:
    conn = ServerConnection()
    event = only(conn, call(3, "nope"))
    assert isinstance(event, Invalid)
    assert event.reply.id == 3
    assert set(conn.pending_ids) == set()
    with pytest.raises(LocalProtocolError):
        conn.respond(3, {})


def test_ids_may_be_reused_once_answered() -> None:
    conn = ServerConnection()
    for _ in range(3):
        assert isinstance(only(conn, call(1)), RequestReceived)
        conn.respond(1, {})


def test_unserialisable_result_leaves_the_id_pending() -> None:
    conn = ServerConnection()
    only(conn, call(1))
    with pytest.raises(LocalProtocolError):
        conn.respond(1, {"x": object()})
    assert set(conn.pending_ids) == {1}
    conn.respond(1, {"x": "fine"})


def test_pending_ids_is_read_only() -> None:
    view = ServerConnection().pending_ids
    assert not hasattr(view, "add")
    assert not hasattr(view, "discard")


def test_batch_flow() -> None:
    conn = ServerConnection()
    text = orjson.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "list"},
            {"jsonrpc": "2.0", "id": 1, "method": "list"},  # duplicate within the batch
            {"jsonrpc": "2.0", "id": 2, "method": "control", "params": {"type": "PAUSE"}},
            {"jsonrpc": "2.0", "method": "control", "params": {"type": "RESUME"}},
            {"jsonrpc": "2.0", "id": 3, "method": "nope"},
        ]
    ).decode()
    received = conn.receive(text)
    assert isinstance(received, Batch)
    first, dup, pause, resume, nope = received.events
    assert first == RequestReceived(1, "list", ListParams())
    assert isinstance(dup, Invalid)
    assert dup.reply.error.data == {"duplicate_id": 1}
    assert pause == RequestReceived(2, "control", ControlParams(type="PAUSE"))
    assert resume == NotificationReceived("control", ControlParams(type="RESUME"))
    assert isinstance(nope, Invalid)
    assert set(conn.pending_ids) == {1, 2}
    replies: list[Reply] = [
        conn.make_response(1, {"runs": []}),
        dup.reply,
        conn.make_error(2, RunNotFound("no run")),
        nope.reply,
    ]
    assert set(conn.pending_ids) == set()
    out = orjson.loads(conn.encode_batch(replies))
    assert [(r.get("id"), "error" in r) for r in out] == [
        (1, False),
        (None, True),
        (2, True),
        (3, True),
    ]
    with pytest.raises(LocalProtocolError):
        conn.make_error(2, RunNotFound("no run"))
    with pytest.raises(LocalProtocolError):
        conn.encode_batch([])  # a batch of notifications gets no reply at all


def test_replies_must_be_made_by_the_connection() -> None:
    conn = ServerConnection()
    conn.receive(f"[{call(1)}]")
    with pytest.raises(LocalProtocolError, match="still pending"):
        conn.encode_batch([Response(1, {})])  # built by hand: 1 would stay pending
    with pytest.raises(LocalProtocolError, match="still pending"):
        conn.encode(Response(1, {}))
    assert wire(conn.encode(conn.make_response(1, {"a": 1}))) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"a": 1},
    }


def test_invalid_replies_are_sent_with_encode() -> None:
    conn = ServerConnection()
    event = only(conn, "{")
    assert isinstance(event, Invalid)
    assert wire(conn.encode(event.reply))["error"]["code"] == -32700


def test_error_for_a_frame_without_an_id() -> None:
    # e.g. a binary frame: nothing to answer by id, nothing pending changes
    conn = ServerConnection()
    only(conn, call(1))
    reply = conn.make_error(None, ParseError("binary frames are not accepted"))
    assert wire(conn.encode(reply)) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "binary frames are not accepted"},
    }
    assert set(conn.pending_ids) == {1}


def test_output_respects_the_frame_limit() -> None:
    conn = ServerConnection()
    nuls = b"\0" * 3000  # valid UTF-8, but six bytes a character as JSON text
    text = conn.output("r", 1, "stdout", nuls, max_frame=5000)
    assert len(text.encode()) <= 5000
    assert wire(text)["params"]["encoding"] == "base64"
    assert "encoding" not in wire(conn.output("r", 2, "stdout", nuls, max_frame=20000))["params"]
    with pytest.raises(LocalProtocolError, match="do not fit"):
        conn.output("r", 3, "stdout", nuls, max_frame=3000)
    conn.output("r", 3, "stdout", b"")  # the failed chunk did not advance the sequence


# -- notifications and run events ----------------------------------------------------


def test_notify() -> None:
    conn = ServerConnection()
    assert wire(conn.notify("connected", {"version": "1"})) == {
        "jsonrpc": "2.0",
        "method": "connected",
        "params": {"version": "1"},
    }
    with pytest.raises(LocalProtocolError):
        conn.notify("process.output", {"run": "r", "seq": 1})
    # process.started announces a run; it is not one of its sequenced events.
    assert wire(conn.notify("process.started", {"run": "r", "pid": 10}))["params"]["pid"] == 10


def test_run_lifecycle() -> None:
    conn = ServerConnection()
    paused = wire(conn.run_event("r", 1, "process.paused", {"pid": 10}))
    assert paused["params"] == {"run": "r", "seq": 1, "pid": 10}
    assert wire(conn.output("r", 2, "stdout", b"hi\n"))["params"]["seq"] == 2
    assert wire(conn.run_event("r", 3, "process.paused", {}))["method"] == "process.paused"
    assert wire(conn.run_event("r", 4, "process.resumed", {}))["method"] == "process.resumed"
    done = wire(conn.run_event("r", 5, "process.completed", {"exit_code": 0}))
    assert done["params"] == {"run": "r", "seq": 5, "exit_code": 0}
    with pytest.raises(LocalProtocolError):
        conn.output("r", 6, "stdout", b"late")
    with pytest.raises(LocalProtocolError):
        conn.run_event("r", 6, "process.completed", {})


def test_runs_are_sequenced_independently() -> None:
    conn = ServerConnection()
    conn.output("a", 1, "stdout", b"")
    conn.output("b", 1, "stderr", b"")
    conn.output("a", 2, "stdout", b"")
    with pytest.raises(LocalProtocolError, match="expected 2"):
        conn.output("b", 3, "stdout", b"")
    with pytest.raises(LocalProtocolError, match="expected 1"):
        conn.output("c", 2, "stdout", b"")
    with pytest.raises(LocalProtocolError, match="expected 3"):
        conn.output("a", 2, "stdout", b"")  # a repeat is as wrong as a gap


def test_failed_event_does_not_advance_the_sequence() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.output("r", 1, "stdin", b"")
    with pytest.raises(LocalProtocolError):
        conn.run_event("r", 1, "process.paused", {"pid": object()})
    conn.output("r", 1, "stdout", b"")


def test_run_event_misuse() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.run_event("r", 1, "process.output", {"data": "x"})  # output() owns it
    with pytest.raises(LocalProtocolError):
        conn.run_event("r", 1, "connected", {})
    with pytest.raises(LocalProtocolError):
        conn.run_event("r", 1, "process.paused", {"seq": 9})


def test_attach_and_detach() -> None:
    conn = ServerConnection()
    conn.attach_run("r", 41)  # a client attaching from seq 40 gets 41 onwards
    conn.output("r", 41, "stdout", b"x")
    conn.detach_run("r")
    with pytest.raises(LocalProtocolError):
        conn.output("r", 42, "stdout", b"x")
    conn.attach_run("r", 1)  # replay from the start, completed runs included
    conn.run_event("r", 1, "process.completed", {})
    conn.attach_run("r", 1)
    conn.run_event("r", 1, "process.completed", {})


# -- the state machine ----------------------------------------------------------------

IDS: list[Id] = [0, 1, 2, "1", "a"]
RUNS = ["r1", "r2"]


class ConnectionMachine(RuleBasedStateMachine):
    """Random interleavings of requests, replies and run events against a simple model."""

    def __init__(self) -> None:
        super().__init__()
        self.conn = ServerConnection()
        self.received: dict[Id, int] = dict.fromkeys(IDS, 0)
        self.answered: dict[Id, int] = dict.fromkeys(IDS, 0)
        self.next_seq = dict.fromkeys(RUNS, 1)
        self.completed: set[str] = set()

    def pending(self) -> set[Id]:
        """The model's pending ids."""
        return {i for i in IDS if self.received[i] > self.answered[i]}

    @rule(id_=st.sampled_from(IDS))
    def receive_request(self, id_: Id) -> None:
        event = only(self.conn, call(id_))
        if id_ in self.pending():
            assert isinstance(event, Invalid)
            assert event.reply.id is None
            assert event.reply.error.data == {"duplicate_id": id_}
        else:
            assert event == RequestReceived(id_, "list", ListParams())
            self.received[id_] += 1

    @rule(text=st.text(max_size=20))
    def receive_junk(self, text: str) -> None:
        self.conn.receive(text)  # whatever it is, pending ids are unchanged (invariant)

    @precondition(lambda self: self.pending())
    @rule(data=st.data(), how=st.sampled_from(["respond", "error", "make", "make_error"]))
    def answer(self, data: st.DataObject, how: str) -> None:
        id_ = data.draw(st.sampled_from(sorted(self.pending(), key=repr)))
        if how == "respond":
            assert wire(self.conn.respond(id_, {"ok": True}))["id"] == id_
        elif how == "error":
            assert wire(self.conn.respond_error(id_, RunNotFound("r")))["id"] == id_
        elif how == "make":
            assert self.conn.make_response(id_, {}).id == id_
        else:
            assert self.conn.make_error(id_, RunNotFound("r")).id == id_
        self.answered[id_] += 1

    @rule(id_=st.sampled_from(IDS))
    def answer_unpending(self, id_: Id) -> None:
        if id_ in self.pending():
            self.conn.respond(id_, {})
            self.answered[id_] += 1
        with pytest.raises(LocalProtocolError):  # a second answer, or one never asked for
            self.conn.respond(id_, {})

    @rule(run=st.sampled_from(RUNS), data=st.binary(max_size=8))
    def output(self, run: str, data: bytes) -> None:
        seq = self.next_seq[run]
        if run in self.completed:
            with pytest.raises(LocalProtocolError):
                self.conn.output(run, seq, "stdout", data)
            return
        assert wire(self.conn.output(run, seq, "stdout", data))["params"]["seq"] == seq
        self.next_seq[run] += 1

    @rule(run=st.sampled_from(RUNS), offset=st.sampled_from([-2, -1, 1, 2]))
    def output_out_of_order(self, run: str, offset: int) -> None:
        with pytest.raises(LocalProtocolError):
            self.conn.output(run, self.next_seq[run] + offset, "stderr", b"x")

    @rule(run=st.sampled_from(RUNS))
    def complete(self, run: str) -> None:
        seq = self.next_seq[run]
        if run in self.completed:
            with pytest.raises(LocalProtocolError):
                self.conn.run_event(run, seq, "process.completed", {})
            return
        self.conn.run_event(run, seq, "process.completed", {"exit_code": 0})
        self.completed.add(run)

    @invariant()
    def each_id_answered_at_most_once_per_receipt(self) -> None:
        for id_ in IDS:
            assert 0 <= self.received[id_] - self.answered[id_] <= 1

    @invariant()
    def pending_is_received_minus_answered(self) -> None:
        assert set(self.conn.pending_ids) == self.pending()


TestConnectionMachine = ConnectionMachine.TestCase
