"""Binary output frames (protocol/binary.py): the layout, byte for byte, and the connection
that sends output that way and everything else as text, under the same rules."""

import struct

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cc_executor.protocol.binary import (
    HEADER_BYTES,
    decode_binary_output,
    encode_binary_output,
)
from cc_executor.protocol.connection import ServerConnection
from cc_executor.protocol.errors import LocalProtocolError
from cc_executor.protocol.notices import Completion, RunCompleted, RunOutput, RunPaused
from cc_executor.protocol.profile import ORIGINAL

EXITED = Completion(status="completed", outcome="exited", exit_code=0)


def test_the_layout_is_kind_stream_seq_run_length_run_then_the_bytes() -> None:
    frame = encode_binary_output("9b1c", 258, "stderr", b"\x00\xff\n")
    assert frame == b"\x01\x02" + (258).to_bytes(8, "big") + b"\x04" + b"9b1c" + b"\x00\xff\n"
    assert HEADER_BYTES == 11
    assert struct.unpack_from(">BBQB", frame) == (1, 2, 258, 4)


@given(
    run=st.text(alphabet="abcdef0123456789-._", min_size=1, max_size=255),
    seq=st.integers(min_value=1, max_value=2**64 - 1),
    stream=st.sampled_from(["stdout", "stderr"]),
    data=st.binary(max_size=4096),
)
def test_any_bytes_round_trip_exactly(run: str, seq: int, stream: str, data: bytes) -> None:
    decoded = decode_binary_output(encode_binary_output(run, seq, stream, data))
    assert decoded == RunOutput(run, seq, stream, data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x01\x01" + bytes(8),  # shorter than the header
        b"\x02\x01" + bytes(8) + b"\x01r",  # another kind
        b"\x01\x03" + bytes(8) + b"\x01r",  # another stream
        b"\x01\x01" + bytes(8) + b"\x00",  # an empty run id
        b"\x01\x01" + bytes(8) + b"\x05ab",  # a run id cut short
        b"\x01\x01" + bytes(8) + b"\x01\xff",  # a run id that is not ASCII
    ],
)
def test_a_frame_that_does_not_fit_is_a_value_error(frame: bytes) -> None:
    with pytest.raises(ValueError, match=r"binary frame|stream|run id|ascii"):
        decode_binary_output(frame)


def test_run_ids_that_cannot_be_framed_are_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        encode_binary_output("r" * 256, 1, "stdout", b"")
    with pytest.raises(LocalProtocolError):
        encode_binary_output("", 1, "stdout", b"")
    with pytest.raises(LocalProtocolError):
        encode_binary_output("r", 1, "stdin", b"")


def test_output_goes_binary_everything_else_text_with_the_same_rules() -> None:
    conn = ServerConnection(binary_output=True)
    data = b"\x00\xff\xfe not utf-8\n"
    frame = conn.send(RunOutput("r", 1, "stdout", data))
    assert isinstance(frame, bytes)
    assert decode_binary_output(frame) == RunOutput("r", 1, "stdout", data)
    paused = conn.send(RunPaused("r", 2))
    assert isinstance(paused, str)
    assert orjson.loads(paused)["params"]["seq"] == 2
    with pytest.raises(LocalProtocolError):  # seq still contiguous
        conn.send(RunOutput("r", 4, "stdout", b"x"))
    assert isinstance(conn.send(RunOutput("r", 3, "stderr", b"")), bytes)
    assert isinstance(conn.send(RunCompleted("r", 4, EXITED)), str)
    with pytest.raises(LocalProtocolError):  # nothing after the completion
        conn.send(RunOutput("r", 5, "stdout", b"late"))


def test_a_chunk_too_big_for_a_text_frame_still_goes_whole() -> None:
    conn = ServerConnection(binary_output=True)
    nuls = b"\x00" * 4000  # as JSON six bytes each; here one
    frame = conn.send(RunOutput("r", 1, "stdout", nuls), max_frame=1000)
    assert isinstance(frame, bytes)
    assert len(frame) == HEADER_BYTES + 1 + len(nuls)


def test_the_original_profile_has_no_binary_frames() -> None:
    with pytest.raises(LocalProtocolError):
        ServerConnection(ORIGINAL, binary_output=True)
