"""Binary output frames: a run's output as a WebSocket binary message, no JSON, no base64.

A client that offers the WebSocket subprotocol `BINARY_SUBPROTOCOL` at connect (and that the
daemon selects) receives every `process.output` as one binary message instead of a text one;
everything else — replies, `process.started`, `paused`, `resumed`, `completed`, ... — stays a
JSON-RPC text frame, in the same order as without it (docs/protocol.md, "Binary output
frames").  The layout, big-endian, like Kubernetes' `v5.channel.k8s.io` a fixed prefix and then
the bytes as the child wrote them:

    offset  size  field
    0       1     kind: 0x01, an output frame (any other value: not for this version)
    1       1     stream: 0x01 stdout, 0x02 stderr
    2       8     seq, unsigned
    10      1     n, the length of the run id in bytes (1..255)
    11      n     the run id, ASCII
    11 + n  rest  the output, raw

Encoding is the daemon's half (`encode_binary_output`), decoding the client's
(`decode_binary_output`, which raises `ValueError` for a frame that does not fit).
"""

import struct
from typing import Final, NamedTuple

from cc_executor.protocol.errors import LocalProtocolError
from cc_executor.protocol.notices import RunOutput, Stream

BINARY_SUBPROTOCOL: Final = "ccx.binary.v1"
OUTPUT_KIND: Final = 0x01
STREAM_CODES: Final[dict[str, int]] = {"stdout": 0x01, "stderr": 0x02}
_STREAMS: Final[dict[int, Stream]] = {0x01: "stdout", 0x02: "stderr"}
MAX_RUN_ID_BYTES: Final = 255

_HEAD = struct.Struct(">BBQB")  # kind, stream, seq, run id length
HEADER_BYTES: Final = _HEAD.size  # 11, then the run id


class BinaryParts(NamedTuple):
    """A binary output frame as its header and the output apart, for a transport that writes
    them together without joining them into a copy first."""

    header: bytes
    data: bytes


def binary_header(run: str, seq: int, stream: str) -> bytes:
    """The header of the output frame for `seq` of `run`'s `stream` (the output follows it).

    Raises:
        LocalProtocolError: an unknown stream, or a run id that is not 1..255 ASCII bytes.
    """
    code = STREAM_CODES.get(stream)
    if code is None:
        raise LocalProtocolError(f"unknown output stream {stream!r}")
    try:
        name = run.encode("ascii")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"run id {run!r} is not ASCII") from None
    if not 0 < len(name) <= MAX_RUN_ID_BYTES:
        raise LocalProtocolError(f"run id of {len(name)} bytes does not fit a binary frame")
    return _HEAD.pack(OUTPUT_KIND, code, seq, len(name)) + name


def encode_binary_output(run: str, seq: int, stream: str, data: bytes) -> bytes:
    """The whole binary frame for a chunk of output (header, then `data` as it is)."""
    return binary_header(run, seq, stream) + data


def decode_binary_output(frame: bytes | bytearray | memoryview) -> RunOutput:
    """A binary frame as the `RunOutput` it carries.

    Raises:
        ValueError: the frame is not an output frame of this layout.
    """
    view = memoryview(frame)
    if len(view) < HEADER_BYTES:
        raise ValueError(f"a binary frame of {len(view)} bytes is shorter than its header")
    kind, code, seq, length = _HEAD.unpack_from(view)
    if kind != OUTPUT_KIND:
        raise ValueError(f"unknown binary frame kind {kind:#04x}")
    stream = _STREAMS.get(code)
    if stream is None:
        raise ValueError(f"unknown output stream code {code:#04x}")
    start = HEADER_BYTES + length
    if length == 0 or len(view) < start:
        raise ValueError("the binary frame's run id is empty or cut short")
    run = bytes(view[HEADER_BYTES:start]).decode("ascii")
    return RunOutput(run, seq, stream, bytes(view[start:]))
