"""ServerConnection: each id answered exactly once; run events contiguous, none after the end;
a reply before the events it causes."""

from typing import Any

import attrs
import orjson
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cc_executor.protocol.binary import BinaryParts, decode_binary_output
from cc_executor.protocol.codec import Utf8Text
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
from cc_executor.protocol.notices import (
    Completion,
    Connected,
    RunCompleted,
    RunOutput,
    RunPaused,
    RunResumed,
    RunStarted,
)
from cc_executor.protocol.params import ControlParams, ListParams
from cc_executor.protocol.results import ControlDone, Detached, RunInfo, RunList

OK = Detached("r", 0)  # any result will do where only the id matters
EXITED = Completion(status="completed", outcome="exited", exit_code=0)
RUN_INFO = RunInfo("r", "running", 10, 10, ("sleep", "9"), 0.5, 0, 0, 0)


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


def wire(text: str | bytes) -> dict[str, Any]:
    """A frame as JSON."""
    value: dict[str, Any] = orjson.loads(text)
    return value


# -- ids -----------------------------------------------------------------------------


def test_request_then_response() -> None:
    conn = ServerConnection()
    assert only(conn, call(1)) == RequestReceived(1, "list", ListParams())
    assert set(conn.pending_ids) == {1}
    assert wire(conn.respond(1, RunList(()))) == {
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
    conn.respond(1, OK)
    with pytest.raises(LocalProtocolError):
        conn.respond(1, OK)
    with pytest.raises(LocalProtocolError):
        conn.respond_error(2, RunNotFound("r"))
    with pytest.raises(LocalProtocolError):
        conn.make_response("1", OK)  # "1" is not 1


def test_duplicate_in_flight_is_refused_without_disturbing_the_first() -> None:
    conn = ServerConnection()
    only(conn, call(5))
    event = only(conn, call(5, "control", {"type": "CANCEL"}))
    assert isinstance(event, Invalid)
    assert event.reply.id is None
    assert (event.reply.error.code, event.reply.error.data) == (-32600, {"duplicate_id": 5})
    assert set(conn.pending_ids) == {5}
    assert wire(conn.respond(5, OK))["id"] == 5


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
        conn.respond(3, OK)


def test_ids_may_be_reused_once_answered() -> None:
    conn = ServerConnection()
    for _ in range(3):
        assert isinstance(only(conn, call(1)), RequestReceived)
        conn.respond(1, OK)


def test_unserialisable_result_leaves_the_id_pending() -> None:
    conn = ServerConnection()
    only(conn, call(1))
    bad = RunList((attrs.evolve(RUN_INFO, journal={"x": object()}),))  # type: ignore[dict-item]
    with pytest.raises(LocalProtocolError):
        conn.respond(1, bad)
    assert set(conn.pending_ids) == {1}
    conn.respond(1, RunList((RUN_INFO,)))


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
        conn.make_response(1, RunList(())),
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
    assert wire(conn.encode(conn.make_response(1, ControlDone("paused", "r")))) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"status": "paused", "run": "r"},
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
    text = conn.send(RunOutput("r", 1, "stdout", nuls), max_frame=5000)
    assert isinstance(text, str)
    assert len(text.encode()) <= 5000
    assert wire(text)["params"]["encoding"] == "base64"
    assert "encoding" not in wire(conn.send(RunOutput("r", 2, "stdout", nuls), 20000))["params"]
    with pytest.raises(LocalProtocolError, match="do not fit"):
        conn.send(RunOutput("r", 3, "stdout", nuls), max_frame=3000)
    conn.send(out("r", 3))  # the failed chunk did not advance the sequence


# -- notifications and run events ----------------------------------------------------


def out(run: str, seq: int, stream: str = "stdout", data: bytes = b"") -> RunOutput:
    return RunOutput(run, seq, stream, data)  # type: ignore[arg-type]


def test_notices() -> None:
    conn = ServerConnection()
    hello = Connected("s1", "1", "cc-executor", ("execute",), {"max_runs_per_connection": 2})
    assert wire(conn.send(hello)) == {
        "jsonrpc": "2.0",
        "method": "connected",
        "params": {
            "session_id": "s1",
            "version": "1",
            "server": "cc-executor",
            "capabilities": ["execute"],
            "limits": {"max_runs_per_connection": 2},
        },
    }
    # process.started announces a run; it is not one of its sequenced events.
    started = wire(conn.send(RunStarted("r", 10, 10, ("sleep", "1"))))
    assert started["params"] == {
        "run": "r",
        "status": "started",
        "pid": 10,
        "pgid": 10,
        "argv": ["sleep", "1"],
    }


def test_run_lifecycle() -> None:
    conn = ServerConnection()
    paused = wire(conn.send(RunPaused("r", 1, 10, 10)))
    assert paused["params"] == {"run": "r", "seq": 1, "status": "paused", "pid": 10, "pgid": 10}
    assert wire(conn.send(out("r", 2, data=b"hi\n")))["params"]["seq"] == 2
    assert wire(conn.send(RunPaused("r", 3)))["method"] == "process.paused"
    assert wire(conn.send(RunResumed("r", 4)))["method"] == "process.resumed"
    done = wire(conn.send(RunCompleted("r", 5, EXITED)))
    assert done["params"] == {
        "run": "r",
        "seq": 5,
        "status": "completed",
        "outcome": "exited",
        "exit_code": 0,
        "signal": None,
        "pid": None,
        "pgid": None,
        "execution_time": None,
        "stdout_bytes": 0,
        "stderr_bytes": 0,
    }
    with pytest.raises(LocalProtocolError):
        conn.send(out("r", 6, data=b"late"))
    with pytest.raises(LocalProtocolError):
        conn.send(RunCompleted("r", 6, EXITED))


def test_runs_are_sequenced_independently() -> None:
    conn = ServerConnection()
    conn.send(out("a", 1))
    conn.send(out("b", 1, "stderr"))
    conn.send(out("a", 2))
    with pytest.raises(LocalProtocolError, match="expected 2"):
        conn.send(out("b", 3))
    with pytest.raises(LocalProtocolError, match="expected 1"):
        conn.send(out("c", 2))
    with pytest.raises(LocalProtocolError, match="expected 3"):
        conn.send(out("a", 2))  # a repeat is as wrong as a gap


def test_failed_event_does_not_advance_the_sequence() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.send(out("r", 1, "stdin"))
    conn.send(out("r", 1))


def test_attach_and_detach() -> None:
    conn = ServerConnection()
    conn.attach_run("r", 41)  # a client attaching from seq 40 gets 41 onwards
    conn.send(out("r", 41, data=b"x"))
    conn.detach_run("r")
    with pytest.raises(LocalProtocolError):
        conn.send(out("r", 42, data=b"x"))
    conn.attach_run("r", 1)  # replay from the start, completed runs included
    conn.send(RunCompleted("r", 1, EXITED))
    conn.attach_run("r", 1)
    conn.send(RunCompleted("r", 1, EXITED))


def test_a_reply_precedes_the_events_it_causes() -> None:
    conn = ServerConnection()
    only(conn, call(1, "execute", {"argv": ["true"]}))
    conn.hold(1, "r", "all")  # the request that starts r: every event of r waits
    assert conn.held(RunStarted("r", 1, 1, ("true",))) == 1
    with pytest.raises(LocalProtocolError, match="must follow the reply to request 1"):
        conn.send(out("r", 1))
    conn.send(out("other", 1))  # other runs are not held
    conn.respond(1, OK)
    assert conn.held(out("r", 1)) is None
    conn.send(out("r", 1))
    only(conn, call(2, "control", {"type": "PAUSE"}))
    conn.hold(2, "r", "state")  # a control: its state events wait, output does not
    conn.send(out("r", 2))
    assert conn.held(RunPaused("r", 3)) == 2
    with pytest.raises(LocalProtocolError):
        conn.send(RunPaused("r", 3))
    conn.respond(2, ControlDone("paused", "r"))
    conn.send(RunPaused("r", 3))


def test_a_batch_reply_releases_its_holds_when_encoded() -> None:
    conn = ServerConnection()
    conn.receive(f"[{call(1, 'control', {'type': 'CANCEL'})}]")
    conn.hold(1, "r", "state")
    reply = conn.make_response(1, ControlDone("canceled", "r", "sigterm"))
    assert conn.held(RunCompleted("r", 1, EXITED)) == 1  # made, not yet on its way
    conn.encode_batch([reply])
    conn.send(RunCompleted("r", 1, EXITED))


def test_only_pending_requests_can_hold() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.hold(9, "r", "all")


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
        self.holds: dict[Id, set[tuple[str, str]]] = {}

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
            assert wire(self.conn.respond(id_, OK))["id"] == id_
        elif how == "error":
            assert wire(self.conn.respond_error(id_, RunNotFound("r")))["id"] == id_
        elif how == "make":
            assert wire(self.conn.encode(self.conn.make_response(id_, OK)))["id"] == id_
        else:
            reply = self.conn.make_error(id_, RunNotFound("r"))
            assert wire(self.conn.encode(reply))["id"] == id_
        self.answered[id_] += 1
        self.holds.pop(id_, None)

    @rule(id_=st.sampled_from(IDS))
    def answer_unpending(self, id_: Id) -> None:
        if id_ in self.pending():
            self.conn.respond(id_, OK)
            self.answered[id_] += 1
            self.holds.pop(id_, None)
        with pytest.raises(LocalProtocolError):  # a second answer, or one never asked for
            self.conn.respond(id_, OK)

    @rule(run=st.sampled_from(RUNS), data=st.binary(max_size=8))
    def output(self, run: str, data: bytes) -> None:
        seq = self.next_seq[run]
        if run in self.completed:
            with pytest.raises(LocalProtocolError):
                self.conn.send(RunOutput(run, seq, "stdout", data))
            return
        if self.held(run, "all"):
            with pytest.raises(LocalProtocolError, match="must follow the reply"):
                self.conn.send(RunOutput(run, seq, "stdout", data))
            return
        assert wire(self.conn.send(RunOutput(run, seq, "stdout", data)))["params"]["seq"] == seq
        self.next_seq[run] += 1

    @rule(run=st.sampled_from(RUNS), offset=st.sampled_from([-2, -1, 1, 2]))
    def output_out_of_order(self, run: str, offset: int) -> None:
        with pytest.raises(LocalProtocolError):
            self.conn.send(RunOutput(run, self.next_seq[run] + offset, "stderr", b"x"))

    @rule(run=st.sampled_from(RUNS))
    def complete(self, run: str) -> None:
        seq = self.next_seq[run]
        if run in self.completed:
            with pytest.raises(LocalProtocolError):
                self.conn.send(RunCompleted(run, seq, EXITED))
            return
        if self.held(run, "state"):
            with pytest.raises(LocalProtocolError, match="must follow the reply"):
                self.conn.send(RunCompleted(run, seq, EXITED))
            return
        self.conn.send(RunCompleted(run, seq, EXITED))
        self.completed.add(run)

    @precondition(lambda self: self.pending())
    @rule(data=st.data(), run=st.sampled_from(RUNS), scope=st.sampled_from(["all", "state"]))
    def hold(self, data: st.DataObject, run: str, scope: str) -> None:
        id_ = data.draw(st.sampled_from(sorted(self.pending(), key=repr)))
        self.conn.hold(id_, run, scope)  # type: ignore[arg-type]
        self.holds.setdefault(id_, set()).add((run, scope))

    def held(self, run: str, kind: str) -> bool:
        """Whether the model says an event of `kind` ("all": output) of `run` must wait."""
        return any(
            r == run and (scope == "all" or kind == "state")
            for id_, pairs in self.holds.items()
            if id_ in self.pending()
            for r, scope in pairs
        )

    @invariant()
    def each_id_answered_at_most_once_per_receipt(self) -> None:
        for id_ in IDS:
            assert 0 <= self.received[id_] - self.answered[id_] <= 1

    @invariant()
    def pending_is_received_minus_answered(self) -> None:
        assert set(self.conn.pending_ids) == self.pending()


TestConnectionMachine = ConnectionMachine.TestCase


def test_a_hold_on_one_kind_of_event_holds_only_that_kind() -> None:
    conn = ServerConnection()
    only(conn, call(1, "control", {"type": "PAUSE"}))
    conn.hold(1, "r", "paused")
    conn.send(RunOutput("r", 1, "stdout", b"before\n"))
    assert conn.held(RunResumed("r", 2)) is None
    with pytest.raises(LocalProtocolError, match="must follow the reply to request 1"):
        conn.send(RunPaused("r", 2))
    conn.hold(1, "r", "all")  # widened, never narrowed
    conn.hold(1, "r", "paused")
    assert conn.held(RunOutput("r", 2, "stdout", b"x")) == 1
    conn.respond(1, ControlDone("paused", "r"))
    assert wire(conn.send(RunPaused("r", 2)))["method"] == "process.paused"


def test_wire_frames_give_output_without_another_copy() -> None:
    conn = ServerConnection()
    (frame,) = conn.wire_frames(RunOutput("r", 1, "stdout", b"hi\n"))
    assert isinstance(frame, Utf8Text)
    assert wire(frame.data)["params"] == {"run": "r", "seq": 1, "type": "stdout", "data": "hi\n"}
    assert isinstance(conn.wire_frames(RunPaused("r", 2))[0], str)
    binary = ServerConnection(binary_output=True)
    data = b"\xff" * 100
    (parts,) = binary.wire_frames(RunOutput("r", 1, "stderr", data))
    assert isinstance(parts, BinaryParts)
    assert parts.data is data  # the output itself, not a copy
    assert decode_binary_output(b"".join(parts)) == RunOutput("r", 1, "stderr", data)
