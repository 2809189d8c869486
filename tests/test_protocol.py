"""The wire format (common/protocol.py, docs/protocol.md): round trips, zero copy, and a decoder
that answers anything malformed with ProtocolError and nothing else."""

from __future__ import annotations

import inspect
import math
import re
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from framebus.common.fields import CAMERA_ID_PATTERN, MAX_META_VALUES
from framebus.common.protocol import (
    DELIVERIES,
    MAX_ATTEMPT,
    MAX_DIMENSION,
    MAX_HEADER_BYTES,
    MAX_HEADER_OBJECTS,
    MAX_IGNORED_SHOWN,
    STATES,
    CameraInfo,
    DescribeReply,
    DescribeRequest,
    Frame,
    FrameEncoder,
    FrameHeader,
    Kind,
    ProtocolError,
    PullRequest,
    Status,
    decode,
    encode_describe_reply,
    encode_describe_request,
    encode_frame,
    encode_pull_request,
    encode_status,
    validate_camera_id,
)
from tests.fuzz.contract import check_decode
from tests.support.protocol_strategies import deep_or_wide_headers, mutated_messages, valid_metas
from tests.support.wire import (
    DROP,
    JPEG,
    T0,
    U64,
    camera_entry,
    deep_meta_frame,
    frame_dict,
    nested,
    raw,
    reply_dict,
    status_dict,
)

FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None)
ROUND_TRIP = settings(max_examples=300, deadline=None, derandomize=True, database=None)


def valid_messages() -> list[bytes]:
    header = FrameHeader("door/left", 3, 10, 20, 16, 16, meta={"exposure_us": 800})
    return [
        encode_frame(header, JPEG),
        encode_status(Status("door/left", "connecting", 30)),
        encode_status(Status("door/left", "source-error", 30, 3, "timeout", 2, 1.5, Frame(header, memoryview(JPEG)))),
        encode_describe_request(),
        encode_describe_reply(
            DescribeReply(
                "node-a", 40, (CameraInfo("door/left", "tcp://10.0.0.2:5556", 16, 16, 30.0, "streaming", "latest"),)
            )
        ),
    ]


VALID = valid_messages()


def decodes_or_protocol_error(message: bytes) -> None:
    """The decoder's contract (tests/fuzz/contract.py): a message, or ProtocolError not hiding
    another exception; what decodes round-trips."""
    check_decode(message)


# ----------------------------------------------------------------------------- strategies

camera_ids = st.from_regex(CAMERA_ID_PATTERN, fullmatch=True).filter(
    lambda c: not any(part in (".", "..") for part in c.split("/"))
)
timestamps = st.integers(0, U64)
dimensions = st.integers(1, MAX_DIMENSION)
printable = st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")) | st.just(
    " "
)


def texts(max_size: int) -> st.SearchStrategy[str]:
    return st.text(printable, max_size=max_size).filter(str.isprintable)


# Values msgpack can carry; round trips need == to hold, so no NaN and lists rather than tuples.
plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), U64)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
metas = st.dictionaries(st.text(min_size=1, max_size=12).filter(str.isprintable), plain_values, max_size=5)

# Anything msgpack can pack, including what the decoder must refuse: NaN, ext types, non-string keys.
any_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), U64)
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8) | st.integers(-(2**63), U64) | st.binary(max_size=4), children, max_size=4
        )
    ),
    max_leaves=16,
)

FIELD_NAMES = sorted(
    set(frame_dict()) | set(status_dict()) | set(camera_entry()) | {"frame", "meta", "node", "time_ns", "cameras"}
)


@st.composite
def jpegs(draw: st.DrawFn) -> bytes:
    return b"\xff\xd8" + draw(st.binary(min_size=0, max_size=64)) + b"\xff\xd9"


@st.composite
def frame_headers(draw: st.DrawFn) -> FrameHeader:
    return FrameHeader(
        camera=draw(camera_ids),
        seq=draw(timestamps),
        capture_ns=draw(timestamps),
        publish_ns=draw(timestamps),
        width=draw(dimensions),
        height=draw(dimensions),
        meta=draw(metas),
    )


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    return Frame(draw(frame_headers()), memoryview(draw(jpegs())))


@st.composite
def statuses(draw: st.DrawFn) -> Status:
    frame = draw(st.none() | frames())
    return Status(
        camera=frame.header.camera if frame else draw(camera_ids),
        state=draw(st.sampled_from(STATES)),
        publish_ns=draw(timestamps),
        last_seq=draw(st.integers(-1, U64)),
        reason=draw(texts(512)),
        attempt=draw(st.integers(0, MAX_ATTEMPT)),
        retry_in_s=draw(st.floats(0, 86400)),
        frame=frame,
    )


@st.composite
def describe_replies(draw: st.DrawFn) -> DescribeReply:
    cameras = draw(
        st.lists(
            st.builds(
                CameraInfo,
                camera=camera_ids,
                endpoint=st.tuples(st.sampled_from(["tcp://", "ipc://", "inproc://"]), texts(200)).map("".join),
                width=st.integers(0, MAX_DIMENSION),
                height=st.integers(0, MAX_DIMENSION),
                fps=st.floats(0, 1000),
                state=st.sampled_from(STATES),
                delivery=st.sampled_from(DELIVERIES),
            ),
            max_size=5,
        )
    )
    return DescribeReply(node=draw(texts(128)), time_ns=draw(timestamps), cameras=tuple(cameras))


def same_frame(a: Frame, b: Frame) -> bool:
    return a.header == b.header and bytes(a.jpeg) == bytes(b.jpeg)


# ----------------------------------------------------------------------------- round trips


@ROUND_TRIP
@given(frames())
def test_frame_round_trip(frame: Frame) -> None:
    decoded = decode(encode_frame(frame.header, frame.jpeg))
    assert isinstance(decoded, Frame)
    assert same_frame(decoded, frame)


@ROUND_TRIP
@given(statuses())
def test_status_round_trip(status: Status) -> None:
    decoded = decode(encode_status(status))
    assert isinstance(decoded, Status)
    assert (decoded.camera, decoded.state, decoded.publish_ns, decoded.last_seq) == (
        status.camera,
        status.state,
        status.publish_ns,
        status.last_seq,
    )
    assert (decoded.reason, decoded.attempt, decoded.retry_in_s) == (status.reason, status.attempt, status.retry_in_s)
    if status.frame is None:
        assert decoded.frame is None
    else:
        assert decoded.frame is not None and same_frame(decoded.frame, status.frame)


@ROUND_TRIP
@given(describe_replies())
def test_describe_reply_round_trip(reply: DescribeReply) -> None:
    assert decode(encode_describe_reply(reply)) == reply


def test_describe_request_round_trip() -> None:
    message = encode_describe_request()
    assert message == b"FB\x01\x03\x01\x00\x00\x00\x80"  # prefix, then the empty msgpack map
    assert decode(message) == DescribeRequest()


def test_frame_with_meta_and_extreme_values() -> None:
    header = FrameHeader(
        "site_1/door-2.left", U64, 0, U64, MAX_DIMENSION, 1, meta={"gain": 1.5, "tags": ["a", "b"], "raw": b"\x00"}
    )
    decoded = decode(encode_frame(header, JPEG))
    assert isinstance(decoded, Frame)
    assert decoded.header == header
    assert decoded.header.meta == {"gain": 1.5, "tags": ["a", "b"], "raw": b"\x00"}


def test_status_carrying_a_frame_keeps_its_header_and_jpeg() -> None:
    frame = Frame(FrameHeader("cam1", 41, 100, 200, 640, 480), memoryview(JPEG))
    decoded = decode(encode_status(Status("cam1", "reconnecting", 300, 41, "gone", 2, 4.0, frame)))
    assert isinstance(decoded, Status)
    assert decoded.frame is not None
    assert decoded.frame.header == frame.header
    assert bytes(decoded.frame.jpeg) == JPEG


def test_unknown_fields_are_ignored() -> None:
    decoded = decode(raw(Kind.FRAME, frame_dict(future_field={"x": 1}), JPEG))
    assert isinstance(decoded, Frame)
    assert decoded.header.seq == 7


def test_encoded_prefix_layout() -> None:
    message = encode_frame(FrameHeader("cam1", 1, 2, 3, 4, 5), JPEG)
    magic, version, kind, header_len = struct.unpack_from("<2sBBI", message)
    assert (magic, version, kind) == (b"FB", 1, Kind.FRAME)
    assert msgpack.unpackb(message[8 : 8 + header_len])["camera"] == "cam1"
    assert message[8 + header_len :] == JPEG


def test_decode_accepts_bytes_bytearray_and_memoryview() -> None:
    message = VALID[0]
    for form in (
        message,
        memoryview(bytearray(message)),
        memoryview(message),
        memoryview(message).cast("B", (1, len(message))),
    ):
        assert isinstance(decode(form), Frame)


# ----------------------------------------------------------------------------- zero copy


def test_jpeg_is_a_view_into_the_message() -> None:
    message = encode_frame(FrameHeader("cam1", 1, 2, 3, 4, 5), JPEG)
    frame = decode(message)
    assert isinstance(frame, Frame)
    assert isinstance(frame.jpeg, memoryview)
    assert frame.jpeg.obj is message
    whole = np.frombuffer(message, dtype=np.uint8)
    view = np.frombuffer(frame.jpeg, dtype=np.uint8)
    assert np.shares_memory(whole, view)
    offset = view.__array_interface__["data"][0] - whole.__array_interface__["data"][0]
    assert offset == len(message) - len(JPEG)


def test_jpeg_view_sees_changes_to_the_buffer() -> None:
    message = bytearray(encode_frame(FrameHeader("cam1", 1, 2, 3, 4, 5), JPEG))
    frame = decode(memoryview(message))
    assert isinstance(frame, Frame)
    message[-3] ^= 0xFF  # not copied: the view sees the change
    assert frame.jpeg[-3] == JPEG[-3] ^ 0xFF


def test_jpeg_is_a_view_into_the_zeromq_message() -> None:
    """As receivers use it: recv(copy=False) and decode the zmq.Frame's buffer in place."""
    big = b"\xff\xd8" + bytes(200_000) + b"\xff\xd9"  # far above pyzmq's copy threshold
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://zero-copy")
        b.connect("inproc://zero-copy")
        a.send(encode_frame(FrameHeader("cam1", 1, 2, 3, 4, 5), big), copy=False)
        message = b.recv(copy=False)
        frame = decode(message.buffer)
        assert isinstance(frame, Frame)
        assert bytes(frame.jpeg) == big
        assert np.shares_memory(np.frombuffer(message.buffer, np.uint8), np.frombuffer(frame.jpeg, np.uint8))
    finally:
        a.close(0)
        b.close(0)
        ctx.term()


def test_status_frame_jpeg_is_a_view_too() -> None:
    frame = Frame(FrameHeader("cam1", 1, 2, 3, 4, 5), memoryview(JPEG))
    message = encode_status(Status("cam1", "reconnecting", 9, 1, frame=frame))
    decoded = decode(message)
    assert isinstance(decoded, Status) and decoded.frame is not None
    assert np.shares_memory(np.frombuffer(message, np.uint8), np.frombuffer(decoded.frame.jpeg, np.uint8))


# ----------------------------------------------------------------------------- fuzzing


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    decodes_or_protocol_error(data)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_after_a_valid_prefix(data: bytes) -> None:
    for kind in Kind:
        decodes_or_protocol_error(struct.pack("<2sBBI", b"FB", 1, kind, len(data)) + data)
        decodes_or_protocol_error(struct.pack("<2sBBI", b"FB", 1, kind, len(data) // 2) + data)


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_truncated_messages(message: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(message) - 1))
    decodes_or_protocol_error(message[:cut])


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_single_byte_mutations(message: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(message) - 1))
    value = data.draw(st.integers(0, 255))
    mutated = bytearray(message)
    mutated[position] = value
    decodes_or_protocol_error(bytes(mutated))


@FUZZ
@given(st.sampled_from(list(Kind)) | st.integers(0, 255), any_values, st.sampled_from([b"", JPEG, b"\xff\xd8\xff\xd9"]))
def test_random_msgpack_headers(kind: int, header: Any, payload: bytes) -> None:
    decodes_or_protocol_error(raw(kind, header, payload))


@FUZZ
@given(
    st.sampled_from(list(Kind)),
    st.dictionaries(st.sampled_from(FIELD_NAMES), any_values, max_size=len(FIELD_NAMES)),
    st.sampled_from([b"", JPEG]),
)
def test_random_maps_with_known_field_names(kind: Kind, header: dict[str, Any], payload: bytes) -> None:
    decodes_or_protocol_error(raw(kind, header, payload))


@FUZZ
@given(st.sampled_from(["frame", "status", "camera"]), st.data())
def test_one_field_replaced_by_anything(where: str, data: st.DataObject) -> None:
    """Valid messages with one field (of the header, a status's frame or a described camera)
    swapped for an arbitrary value: deep validation paths, not just the first check."""
    value = data.draw(any_values)
    if where == "frame":
        header = frame_dict()
        header[data.draw(st.sampled_from(sorted(header) + ["meta"]))] = value
        decodes_or_protocol_error(raw(Kind.FRAME, header, JPEG))
    elif where == "status":
        header = status_dict(frame=frame_dict())
        target = header if data.draw(st.booleans()) else header["frame"]
        target[data.draw(st.sampled_from(sorted(target)))] = value
        decodes_or_protocol_error(raw(Kind.STATUS, header, JPEG))
    else:
        camera = camera_entry()
        camera[data.draw(st.sampled_from(sorted(camera)))] = value
        decodes_or_protocol_error(raw(Kind.DESCRIBE_REPLY, {"node": "n", "time_ns": 1, "cameras": [camera]}))


@FUZZ
@given(st.text(max_size=80) | any_values)
def test_validate_camera_id_only_raises_protocol_error(camera: Any) -> None:
    try:
        assert validate_camera_id(camera) == camera
    except ProtocolError:
        return
    assert CAMERA_ID_PATTERN.fullmatch(camera)


# ----------------------------------------------------------------------------- hostile cases

HOSTILE: list[tuple[str, bytes, str]] = [
    ("empty", b"", r"shorter than the 8-byte prefix"),
    ("short", b"FB\x01\x01", r"shorter than the 8-byte prefix"),
    ("bad magic", raw(Kind.FRAME, frame_dict(), JPEG, magic=b"BF"), r"bad magic b'BF'"),
    ("wrong version", raw(Kind.FRAME, frame_dict(), JPEG, version=2), r"unsupported protocol version 2"),
    ("unknown kind", raw(9, frame_dict(), JPEG), r"unknown message kind 9"),
    ("kind zero", raw(0, {}), r"unknown message kind 0"),
    ("header past end", raw(Kind.FRAME, frame_dict(), b"", header_len=4000), r"runs past the message end"),
    ("header over 64 KiB", raw(Kind.FRAME, frame_dict(), JPEG, header_len=MAX_HEADER_BYTES + 1), r"exceeds 65536"),
    ("header u32 max", raw(Kind.FRAME, frame_dict(), JPEG, header_len=2**32 - 1), r"exceeds 65536"),
    ("header not msgpack", raw(Kind.FRAME, b"\xc1", JPEG), r"not valid msgpack"),
    ("header cut short", raw(Kind.FRAME, msgpack.packb(frame_dict())[:-3], JPEG), r"not valid msgpack"),
    ("two objects as header", raw(Kind.FRAME, msgpack.packb({}) + msgpack.packb({}), JPEG), r"not valid msgpack"),
    ("header not a map", raw(Kind.FRAME, [1, 2, 3], JPEG), r"must be a msgpack map, got list"),
    ("header is a string", raw(Kind.DESCRIBE_REQUEST, "hello"), r"must be a msgpack map, got str"),
    ("integer map keys", raw(Kind.FRAME, {1: 2}, JPEG), r"not valid msgpack"),
    ("missing field", raw(Kind.FRAME, frame_dict(seq=DROP), JPEG), r"missing field 'seq'"),
    ("missing camera", raw(Kind.FRAME, frame_dict(camera=DROP), JPEG), r"missing field 'camera'"),
    ("bool for int", raw(Kind.FRAME, frame_dict(seq=True), JPEG), r"field 'seq' must be int, got bool"),
    ("bool for width", raw(Kind.FRAME, frame_dict(width=False), JPEG), r"field 'width' must be int, got bool"),
    ("float for int", raw(Kind.FRAME, frame_dict(seq=1.0), JPEG), r"field 'seq' must be int, got float"),
    ("string for int", raw(Kind.FRAME, frame_dict(capture_ns="1"), JPEG), r"field 'capture_ns' must be int, got str"),
    ("negative seq", raw(Kind.FRAME, frame_dict(seq=-1), JPEG), r"field 'seq'=-1 is outside \[0, "),
    ("negative capture_ns", raw(Kind.FRAME, frame_dict(capture_ns=-5), JPEG), r"field 'capture_ns'=-5 is outside"),
    ("width 0", raw(Kind.FRAME, frame_dict(width=0), JPEG), r"field 'width'=0 is outside \[1, 16384\]"),
    ("width 20000", raw(Kind.FRAME, frame_dict(width=20000), JPEG), r"field 'width'=20000 is outside \[1, 16384\]"),
    ("height 0", raw(Kind.FRAME, frame_dict(height=0), JPEG), r"field 'height'=0 is outside"),
    ("camera ../../etc", raw(Kind.FRAME, frame_dict(camera="../../etc"), JPEG), r"may not contain '\.' or '\.\.'"),
    ("camera a/../b", raw(Kind.FRAME, frame_dict(camera="a/../b"), JPEG), r"may not contain '\.' or '\.\.'"),
    ("camera .", raw(Kind.FRAME, frame_dict(camera="."), JPEG), r"may not contain '\.' or '\.\.'"),
    ("camera empty", raw(Kind.FRAME, frame_dict(camera=""), JPEG), r"camera id '' is invalid"),
    ("camera too long", raw(Kind.FRAME, frame_dict(camera="x" * 65), JPEG), r"camera id 'x{65}' is invalid"),
    ("camera space", raw(Kind.FRAME, frame_dict(camera="cam 1"), JPEG), r"camera id 'cam 1' is invalid"),
    ("camera newline", raw(Kind.FRAME, frame_dict(camera="cam\n1"), JPEG), r"camera id 'cam\\n1' is invalid"),
    ("camera 5 parts", raw(Kind.FRAME, frame_dict(camera="a/b/c/d/e"), JPEG), r"camera id 'a/b/c/d/e' is invalid"),
    ("camera leading /", raw(Kind.FRAME, frame_dict(camera="/etc"), JPEG), r"camera id '/etc' is invalid"),
    ("camera not ascii", raw(Kind.FRAME, frame_dict(camera="kamera\u00e9"), JPEG), r"is invalid"),
    ("camera not a string", raw(Kind.FRAME, frame_dict(camera=b"cam1"), JPEG), r"'camera' must be str, got bytes"),
    ("encoding png", raw(Kind.FRAME, frame_dict(encoding="png"), JPEG), r"unsupported encoding 'png'"),
    ("meta not a map", raw(Kind.FRAME, frame_dict(meta=[1]), JPEG), r"field 'meta' must be a map, got list"),
    ("meta empty key", raw(Kind.FRAME, frame_dict(meta={"": 1}), JPEG), r"'meta' key '' must be printable"),
    ("meta control key", raw(Kind.FRAME, frame_dict(meta={"a\x1b[2J": 1}), JPEG), r"must be printable"),
    ("meta bytes key", raw(Kind.FRAME, frame_dict(meta={b"k": 1}), JPEG), r"'meta' key b'k' must be printable"),
    ("meta many keys", raw(Kind.FRAME, frame_dict(meta={f"k{i}": i for i in range(257)}), JPEG), r"257 keys"),
    ("meta too deep", raw(Kind.FRAME, frame_dict(meta={"a": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}), JPEG), r"deeper"),
    ("not a JPEG", raw(Kind.FRAME, frame_dict(), b"\x89PNG\r\n\x1a\n" + b"\x00" * 20), r"is not a JPEG \(no SOI"),
    ("empty payload", raw(Kind.FRAME, frame_dict()), r"payload of 0 bytes is not a JPEG"),
    ("truncated JPEG", raw(Kind.FRAME, frame_dict(), JPEG[:-1]), r"JPEG payload is truncated \(no EOI"),
    ("unknown state", raw(Kind.STATUS, status_dict(state="exploding")), r"unknown state 'exploding'"),
    ("status bad camera", raw(Kind.STATUS, status_dict(camera="../x")), r"may not contain"),
    ("status last_seq -2", raw(Kind.STATUS, status_dict(last_seq=-2)), r"field 'last_seq'=-2 is outside"),
    ("status attempt -1", raw(Kind.STATUS, status_dict(attempt=-1)), r"field 'attempt'=-1 is outside"),
    (
        "status attempt 2**31",
        raw(Kind.STATUS, status_dict(attempt=2**31)),
        r"'attempt'=2147483648 is outside \[0, 2147483647\]",
    ),
    (
        "capture_ns NaN",
        raw(Kind.FRAME, frame_dict(capture_ns=math.nan), JPEG),
        r"'capture_ns'=nan is not a whole number of ns",
    ),
    (
        "capture_ns 1.5",
        raw(Kind.FRAME, frame_dict(capture_ns=1.5), JPEG),
        r"'capture_ns'=1.5 is not a whole number of ns",
    ),
    (
        "publish_ns float 2**64",
        raw(Kind.FRAME, frame_dict(publish_ns=2.0**64), JPEG),
        r"'publish_ns'=1.8446744073709552e\+19 is outside",
    ),
    ("publish_ns float -1", raw(Kind.STATUS, status_dict(publish_ns=-1.0)), r"'publish_ns'=-1.0 is outside"),
    (
        "time_ns inf",
        raw(Kind.DESCRIBE_REPLY, {"node": "n", "time_ns": math.inf, "cameras": []}),
        r"'time_ns'=inf is not a whole",
    ),
    ("seq float", raw(Kind.FRAME, frame_dict(seq=float(2**60)), JPEG), r"field 'seq' must be int, got float"),
    ("status retry NaN", raw(Kind.STATUS, status_dict(retry_in_s=math.nan)), r"'retry_in_s'=nan is outside"),
    ("status retry 2 days", raw(Kind.STATUS, status_dict(retry_in_s=172800)), r"'retry_in_s'=172800 is outside"),
    ("status retry bool", raw(Kind.STATUS, status_dict(retry_in_s=True)), r"'retry_in_s' must be int or float"),
    ("status reason long", raw(Kind.STATUS, status_dict(reason="x" * 513)), r"'reason' is longer than 512"),
    ("status reason control", raw(Kind.STATUS, status_dict(reason="a\x1b[2Jb")), r"'reason' contains non-printable"),
    ("status payload, no frame", raw(Kind.STATUS, status_dict(), JPEG), r"status without a frame must have no payload"),
    ("status frame not a map", raw(Kind.STATUS, status_dict(frame=1), JPEG), r"field 'frame' must be a map"),
    ("status frame no JPEG", raw(Kind.STATUS, status_dict(frame=frame_dict())), r"payload of 0 bytes is not a JPEG"),
    ("status frame bad", raw(Kind.STATUS, status_dict(frame=frame_dict(width=0)), JPEG), r"'width'=0 is outside"),
    ("describe request payload", raw(Kind.DESCRIBE_REQUEST, {}, b"x"), r"describe request must have no payload"),
    ("describe reply payload", raw(Kind.DESCRIBE_REPLY, {}, b"x"), r"describe reply must have no payload"),
    ("describe no cameras", raw(Kind.DESCRIBE_REPLY, {"node": "n", "time_ns": 1}), r"missing field 'cameras'"),
    (
        "describe endpoint http",
        raw(Kind.DESCRIBE_REPLY, {"node": "n", "time_ns": 1, "cameras": [camera_entry(endpoint="http://x")]}),
        r"endpoint 'http://x' is not a tcp://, ipc:// or inproc:// address",
    ),
    (
        "describe unknown delivery",
        raw(Kind.DESCRIBE_REPLY, {"node": "n", "time_ns": 1, "cameras": [camera_entry(delivery="all")]}),
        r"cameras\[0\]: unknown delivery 'all'",
    ),
    (
        "describe unknown state",
        raw(Kind.DESCRIBE_REPLY, {"node": "n", "time_ns": 1, "cameras": [camera_entry(state="on")]}),
        r"cameras\[0\]: unknown state 'on'",
    ),
    (
        "describe fps 1001",
        raw(Kind.DESCRIBE_REPLY, {"node": "n", "time_ns": 1, "cameras": [camera_entry(fps=1001.0)]}),
        r"'fps'=1001.0 is outside \[0, 1000\]",
    ),
    (
        "describe camera not a map",
        raw(Kind.DESCRIBE_REPLY, {"node": "n", "time_ns": 1, "cameras": ["cam1"]}),
        r"cameras\[0\] must be a map",
    ),
    (
        "describe too many cameras",
        raw(Kind.DESCRIBE_REPLY, {"node": "n", "time_ns": 1, "cameras": [0] * 1025}),
        r"1025 cameras is more than 1024",
    ),
    (
        "describe node name long",
        raw(Kind.DESCRIBE_REPLY, {"node": "n" * 129, "time_ns": 1, "cameras": []}),
        r"'node' is longer than 128",
    ),
]


@pytest.mark.parametrize(("message", "problem"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_message_is_refused_with_a_reason(message: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        decode(message)


def test_encoder_refuses_a_header_over_64_kib() -> None:
    header = FrameHeader("cam1", 1, 2, 3, 4, 5, meta={"blob": b"x" * MAX_HEADER_BYTES})
    with pytest.raises(ProtocolError, match=r"header of \d+ bytes exceeds 65536"):
        encode_frame(header, JPEG)


def test_header_of_exactly_64_kib_is_accepted() -> None:
    header = frame_dict(meta={"pad": ""})
    pad = MAX_HEADER_BYTES - len(msgpack.packb(header, use_bin_type=True))
    header["meta"]["pad"] = "p" * (pad - 2)  # str8 -> str16 adds 2 bytes of length
    packed = msgpack.packb(header, use_bin_type=True)
    assert len(packed) == MAX_HEADER_BYTES
    assert isinstance(decode(raw(Kind.FRAME, packed, JPEG)), Frame)


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(ProtocolError, ValueError)
    assert re.search("bad magic", str(pytest.raises(ValueError, decode, b"XX" + VALID[0][2:]).value))


def test_ns_times_may_come_as_floats_holding_whole_numbers() -> None:
    """Languages whose numbers are doubles write a time above 2**53 as a float64: taken as its
    integer value (docs/protocol.md 2.4). Counts such as seq are not."""
    frame = decode(raw(Kind.FRAME, frame_dict(capture_ns=float(T0), publish_ns=float(T0) * 1.5), JPEG))
    assert isinstance(frame, Frame)
    assert (frame.header.capture_ns, frame.header.publish_ns) == (T0, int(float(T0) * 1.5))
    assert type(frame.header.capture_ns) is int
    status = decode(raw(Kind.STATUS, status_dict(publish_ns=0.0)))
    assert isinstance(status, Status) and status.publish_ns == 0
    reply = decode(raw(Kind.DESCRIBE_REPLY, {"node": "n", "time_ns": 2.0**63, "cameras": []}))
    assert isinstance(reply, DescribeReply) and reply.time_ns == 2**63


def test_attempt_is_a_signed_32_bit_int_and_the_encoder_keeps_it_so() -> None:
    decoded = decode(encode_status(Status("cam1", "source-error", 1, attempt=MAX_ATTEMPT)))
    assert isinstance(decoded, Status) and decoded.attempt == 2**31 - 1
    decoded = decode(encode_status(Status("cam1", "source-error", 1, attempt=2**40)))
    assert isinstance(decoded, Status) and decoded.attempt == MAX_ATTEMPT


OPTIONAL_CAMERA_FIELDS = [
    ("reason", "a\x00b", r"'reason' contains non-printable characters"),
    ("reason", "x" * 513, r"'reason' is longer than 512"),
    ("reason", 5, r"'reason' must be str, got int"),
    ("pull_endpoint", "ftp://x", r"pull_endpoint 'ftp://x' is not a tcp://"),
    ("pull_endpoint", 0, r"'pull_endpoint' must be str, got int"),
    ("pull_endpoint", None, r"'pull_endpoint' must be str, got NoneType"),
    ("published_fps", math.nan, r"'published_fps'=nan is outside \[0, 1000\]"),
    ("published_fps", "30", r"'published_fps' must be int or float, got str"),
    ("reconnects", -1, r"'reconnects'=-1 is outside"),
    ("reconnects", 1.0, r"'reconnects' must be int, got float"),
]


@pytest.mark.parametrize(("name", "value", "problem"), OPTIONAL_CAMERA_FIELDS)
def test_an_invalid_optional_camera_field_is_ignored_not_the_node(name: str, value: Any, problem: str) -> None:
    """One bad informational field must not hide every camera of a node: the camera is kept
    without it, and the reply says what was ignored for the worker to report."""
    good = camera_entry("cam2", "tcp://127.0.0.1:5557")
    reply = decode(raw(Kind.DESCRIBE_REPLY, reply_dict([camera_entry(**{name: value}), good])))
    assert isinstance(reply, DescribeReply)
    assert [c.camera for c in reply.cameras] == ["cam1", "cam2"]
    assert reply.cameras[0] == CameraInfo("cam1", "tcp://127.0.0.1:5556", 1280, 720, 30.0, "streaming", "latest")
    assert len(reply.ignored) == 1
    assert re.search(r"^describe reply: cameras\[0\]: .*" + problem, reply.ignored[0]), reply.ignored


def test_an_empty_pull_endpoint_means_no_pull_mode() -> None:
    reply = decode(raw(Kind.DESCRIBE_REPLY, reply_dict([camera_entry(pull_endpoint="")])))
    assert isinstance(reply, DescribeReply)
    assert reply.cameras[0].pull_endpoint == "" and reply.ignored == ()


def test_ignored_fields_are_reported_in_bounded_words() -> None:
    cameras = [camera_entry(f"c{i}", reason="\x1b[2J", reconnects=-1) for i in range(100)]
    reply = decode(raw(Kind.DESCRIBE_REPLY, reply_dict(cameras)))
    assert isinstance(reply, DescribeReply) and len(reply.cameras) == 100
    assert len(reply.ignored) == MAX_IGNORED_SHOWN + 1
    assert reply.ignored[-1] == f"and {200 - MAX_IGNORED_SHOWN} more"


def test_required_camera_fields_still_make_the_reply_malformed() -> None:
    with pytest.raises(ProtocolError, match=r"cameras\[1\]: field 'width'=-1 is outside"):
        decode(raw(Kind.DESCRIBE_REPLY, reply_dict([camera_entry(), camera_entry("c2", width=-1)])))


def test_status_with_a_frame_of_another_camera_is_malformed() -> None:
    jpeg = b"\xff\xd8" + b"\x00" * 8 + b"\xff\xd9"
    other = Frame(FrameHeader("other", 1, 1, 1, 8, 8), memoryview(jpeg))
    message = encode_status(Status("cam1", "reconnecting", 1, frame=other))
    with pytest.raises(ProtocolError, match="attached frame is of camera 'other'"):
        decode(message)


# ----------------------------------------------------------------------------- deep, wide, mutated
# Issue 11: a ~700-byte FRAME whose meta nested 500-1023 levels made decode() raise RecursionError.

DEEP = settings(max_examples=300, deadline=None, derandomize=True, database=None)


@contextmanager
def stack_of(frames: int) -> Iterator[None]:
    """Allow only `frames` Python frames more than the caller has: recursion by depth fails."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize("container", ["list", "map"])
@pytest.mark.parametrize("levels", [17, 100, 500, 1000, 1023])
def test_deep_meta_is_refused_without_recursion(levels: int, container: str) -> None:
    message = deep_meta_frame(levels, container)
    with stack_of(40), pytest.raises(ProtocolError, match=r"'meta' is nested deeper than 16 levels"):
        decode(message)


@pytest.mark.parametrize("container", ["list", "map"])
def test_deepest_allowed_meta_decodes_with_a_small_stack(container: str) -> None:
    with stack_of(40):
        decoded = decode(deep_meta_frame(16, container))
    assert isinstance(decoded, Frame)


@pytest.mark.parametrize("container", ["list", "map"])
def test_nesting_past_msgpacks_1024_levels_is_refused(container: str) -> None:
    with pytest.raises(ProtocolError, match=r"nested deeper than 1024 levels"):
        decode(deep_meta_frame(1024, container))


def test_a_status_attached_frame_with_a_deep_meta_is_refused() -> None:
    frame = msgpack.packb(frame_dict(), use_bin_type=True)
    deep = bytes([frame[0] + 1]) + frame[1:] + msgpack.packb("meta") + b"\x81\xa1d" + nested(1021, "map")
    header = msgpack.packb(status_dict(frame=frame_dict()), use_bin_type=True).replace(frame, deep)
    with stack_of(40), pytest.raises(ProtocolError, match=r"'meta' is nested deeper than 16 levels"):
        decode(raw(Kind.STATUS, header, JPEG))


def test_a_deep_camera_field_is_refused_without_repr() -> None:
    """Error messages quote a peer's value: never by walking into it (repr of a deep list recurses)."""
    header = msgpack.packb(status_dict(frame=frame_dict()), use_bin_type=True)
    deep = header.replace(b"\xa6camera\xa4cam1", b"\xa6camera" + nested(1000, "list"), 1)
    with stack_of(40), pytest.raises(ProtocolError, match=r"not a list"):
        decode(raw(Kind.STATUS, deep, JPEG))


@pytest.mark.parametrize("kind", list(Kind))
def test_each_kind_has_a_header_object_budget(kind: Kind) -> None:
    """Counted before msgpack builds anything: at the budget a header is read, past it refused."""
    budget = MAX_HEADER_OBJECTS[kind]
    fixed = len(frame_dict()) * 2 + 3 if kind == Kind.FRAME else 3  # fields, the map, "x" and its list
    payload = JPEG if kind == Kind.FRAME else b""
    header = frame_dict() if kind == Kind.FRAME else {}
    at_budget = raw(kind, header | {"x": [""] * (budget - fixed)}, payload)
    assert len(at_budget) > budget  # long enough to be scanned
    try:
        decode(at_budget)
    except ProtocolError as exc:  # refused for its fields (a reply without cameras), not its size
        assert "values" not in str(exc), exc
    with pytest.raises(ProtocolError, match=rf"header is not valid msgpack within its limits: .*more than {budget}"):
        decode(raw(kind, header | {"x": [""] * (budget - fixed + 1)}, payload))


def test_meta_values_are_bounded_across_levels() -> None:
    spread = {f"k{i}": [0] * (MAX_META_VALUES // 8 - 1) for i in range(8)}  # 8 keys + 8 * 511 values
    assert isinstance(decode(raw(Kind.FRAME, frame_dict(meta=spread), JPEG)), Frame)
    spread["k0"].append(0)
    with pytest.raises(ProtocolError, match=rf"'meta' holds more than {MAX_META_VALUES} values"):
        decode(raw(Kind.FRAME, frame_dict(meta=spread), JPEG))


@DEEP
@given(deep_or_wide_headers())
def test_deep_or_wide_headers_of_every_kind(message: bytes) -> None:
    with stack_of(60):
        decodes_or_protocol_error(message)


@FUZZ
@given(mutated_messages())
def test_structure_aware_mutations_of_every_kind(message: bytes) -> None:
    decodes_or_protocol_error(message)


@ROUND_TRIP
@given(frame_headers(), valid_metas())
def test_frames_with_deep_or_wide_metas_round_trip(header: FrameHeader, meta: dict[str, Any]) -> None:
    frame = Frame(FrameHeader(header.camera, header.seq, 1, 2, 3, 4, meta=meta), memoryview(JPEG))
    message = encode_frame(frame.header, frame.jpeg)
    decoded = check_decode(message)
    assert isinstance(decoded, Frame) and decoded.header == frame.header


@ROUND_TRIP
@given(statuses(), valid_metas())
def test_statuses_with_a_frame_with_a_deep_or_wide_meta_round_trip(status: Status, meta: dict[str, Any]) -> None:
    header = FrameHeader(status.camera, 1, 2, 3, 4, 5, meta=meta)
    with_frame = Status(status.camera, status.state, 1, 1, status.reason, 0, 0.0, Frame(header, memoryview(JPEG)))
    decoded = check_decode(encode_status(with_frame))
    assert isinstance(decoded, Status) and decoded.frame is not None and decoded.frame.header == header


@ROUND_TRIP
@given(st.integers(-1, U64))
def test_pull_request_round_trip(after_seq: int) -> None:
    assert check_decode(encode_pull_request(after_seq)) == PullRequest(after_seq)


@ROUND_TRIP
@given(describe_replies())
def test_every_valid_kind_keeps_the_contract(reply: DescribeReply) -> None:
    assert check_decode(encode_describe_reply(reply)) == reply
    assert check_decode(encode_describe_request()) == DescribeRequest()


def worst_messages() -> dict[str, bytes]:
    """The costliest messages to decode within the limits, found by measuring candidates: as
    many containers as a kind's budget lets msgpack build, a meta at its limits, the most
    cameras a reply holds."""
    frame_budget = MAX_HEADER_OBJECTS[Kind.FRAME] - len(frame_dict()) * 2 - 3
    cameras = [camera_entry(camera=f"c{i}", endpoint="tcp://h:1") for i in range(700)]
    while len(msgpack.packb({"node": "n", "time_ns": 1, "cameras": cameras})) > MAX_HEADER_BYTES:
        cameras.pop()
    return {
        "frame, unknown field of empty lists at the budget": raw(
            Kind.FRAME, frame_dict(x=[[]] * frame_budget), b"\xff\xd8\xff\xd9"
        ),
        "frame, meta of empty lists at its limit": raw(
            Kind.FRAME, frame_dict(meta={"k": [[]] * (MAX_META_VALUES - 1)}), b"\xff\xd8\xff\xd9"
        ),
        "frame, 64 KiB header over the budget": raw(Kind.FRAME, frame_dict(x=[[]] * 65_000), b"\xff\xd8\xff\xd9"),
        "frame, meta 1023 levels deep": deep_meta_frame(1023, "map", b"\xff\xd8\xff\xd9"),
        f"describe reply, {len(cameras)} valid cameras": raw(
            Kind.DESCRIBE_REPLY, {"node": "n", "time_ns": 1, "cameras": cameras}
        ),
        "describe reply, empty lists at the budget": raw(
            Kind.DESCRIBE_REPLY, {"node": "n", "time_ns": 1, "cameras": [[]] * 1024, "x": [[]] * 23_540}
        ),
    }


def test_worst_case_decode_cost_is_bounded() -> None:
    """CPU time (best of 5; the machine may be loaded) of the costliest messages; printed for
    the record, and far below what would let one message stall a worker."""
    figures = []
    for name, message in worst_messages().items():
        best = math.inf
        decodes_or_protocol_error(message)
        for _ in range(5):
            started = time.process_time()
            try:
                decode(message)
            except ProtocolError:
                pass
            best = min(best, time.process_time() - started)
        figures.append(f"{name} ({len(message)} B): {best * 1000:.1f} ms")
        assert best < 0.25, figures[-1]
    print("\nworst-case decode CPU time:\n  " + "\n  ".join(figures))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**63 - 1),
    st.integers(0, 2**63 - 1),
    st.integers(0, 2**63 - 1),
    st.integers(1, 8192),
    st.integers(1, 8192),
    st.binary(max_size=64),
)
def test_the_frame_encoder_makes_encode_frames_bytes(
    seq: int, capture_ns: int, publish_ns: int, width: int, height: int, body: bytes
) -> None:
    """A publisher's cheaper encoder (one dict, one Packer, reused) is the wire format, byte for
    byte, frame after frame."""
    encoder = FrameEncoder("site1/door")
    jpeg = b"\xff\xd8" + body + b"\xff\xd9"
    for n in range(2):
        header = FrameHeader("site1/door", seq + n, capture_ns, publish_ns, width, height)
        assert encoder.encode(seq + n, capture_ns, publish_ns, (width, height), jpeg) == encode_frame(header, jpeg)
