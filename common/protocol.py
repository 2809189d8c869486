"""The framebus wire format: one ZeroMQ message per frame, status or control exchange.

Every message is ``prefix (8 bytes) | msgpack header | payload``. The prefix carries the
header length so that the payload (a JPEG) is found by slicing, never copied and never
pushed through msgpack. ``docs/protocol.md`` is the byte-level specification; keep the two
in step.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

import msgpack

from framebus.common.fields import (
    MAX_META_VALUES,
    MAX_STATUS_TEXT,
    POOL_NAME_PATTERN,
    U64_MAX,
    ProtocolError,
    checked_jpeg,
    checked_meta,
    endpoint_field,
    field_of,
    int_in,
    ns_field,
    optional_number,
    shown,
    text_field,
    validate_camera_id,
    validate_pool_name,
)
from framebus.common.msgpack_shape import ShapeError, check_size
from framebus.common.redact import redact
from framebus.common.words import Delivery, State

MAGIC = b"FB"
VERSION = 1
PREFIX = struct.Struct("<2sBBI")  # magic, version, kind, header length
MAX_HEADER_BYTES = 64 * 1024
MAX_NODE_NAME = 128  # characters of a node name in a describe reply (printable)
MAX_DIMENSION = 16384
MAX_CAMERAS = 1024  # entries of a describe reply
MEMBER_TOKEN_PATTERN = POOL_NAME_PATTERN  # a pool member's token (3.6): the same characters, as short
ENCODING_JPEG = "jpeg"
MAX_ATTEMPT = 2**31 - 1  # a status's reconnection attempt: fits a signed 32-bit int
MAX_IGNORED_SHOWN = 8  # problems a decoded describe reply keeps, of its ignored optional fields

log = logging.getLogger("common.protocol")
T = TypeVar("T")


class Kind(IntEnum):
    FRAME = 1
    STATUS = 2
    DESCRIBE_REQUEST = 3
    DESCRIBE_REPLY = 4
    PULL_REQUEST = 5


# The most msgpack objects (map keys count) a header of each kind may hold: what its fields can
# need, plus 256 for fields added within version 1. This bounds decoding work whatever the bytes.
MAX_HEADER_OBJECTS = {
    Kind.FRAME: 2 * MAX_META_VALUES + 256,  # a map entry of meta is two objects
    Kind.STATUS: 2 * MAX_META_VALUES + 256,
    Kind.DESCRIBE_REQUEST: 256,
    Kind.DESCRIBE_REPLY: 24 * MAX_CAMERAS + 256,  # a camera's map and its 11 fields: 23
    Kind.PULL_REQUEST: 2 * MAX_META_VALUES + 256,  # a pool member's result carries meta
}


@dataclass(frozen=True)
class FrameHeader:
    camera: str
    seq: int
    capture_ns: int
    publish_ns: int
    width: int
    height: int
    encoding: str = ENCODING_JPEG
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Frame:
    """A received frame; ``jpeg`` is a view into the ZeroMQ message, valid while it lives."""

    header: FrameHeader
    jpeg: memoryview


@dataclass(frozen=True)
class Status:
    """What a camera is doing while no frame goes out (streaming, connecting, ...)."""

    camera: str
    state: str
    publish_ns: int
    last_seq: int = -1
    reason: str = ""
    attempt: int = 0
    retry_in_s: float = 0.0
    # The last frame rides along so that a status never displaces an unread frame under
    # conflation (a conflating socket keeps only the newest message).
    frame: Frame | None = None


@dataclass(frozen=True)
class DescribeRequest:
    pass


@dataclass(frozen=True)
class PoolResult:
    """What a pool member made of the frame it was handed (`seq`), sent with its next request:
    the node publishes it on the pool's stream. `jpeg` and `size`: an output picture; None: the
    node republishes the source frame's own JPEG with `meta`."""

    seq: int
    meta: Mapping[str, Any] = field(default_factory=dict)
    size: tuple[int, int] | None = None
    jpeg: memoryview | bytes | None = None


@dataclass(frozen=True)
class PullRequest:
    """Pull mode: "send me the newest frame with a sequence number above after_seq". With
    `pool`: "the newest frame not yet handed to any member of this pool", and `result` is what
    this member made of the last frame it was handed (docs/protocol.md 3.5, 3.6)."""

    after_seq: int = -1
    pool: str = ""
    result: PoolResult | None = None
    # A pool member's token, the same on its requests to every camera of a node: the node then
    # hands it one frame at a time across them all, of the camera that waited longest (3.6).
    member: str = ""


@dataclass(frozen=True)
class CameraInfo:
    camera: str
    endpoint: str
    width: int
    height: int
    fps: float
    state: str
    delivery: str  # a Delivery: conflated, or lossless and back-pressured
    reason: str = ""  # why the camera is not streaming (redacted), empty when it is
    pull_endpoint: str = ""  # where pull requests are answered; empty: no pull mode
    published_fps: float = 0.0  # frames published per second, lately
    reconnects: int = 0  # times the stream died and was reopened (or the capture restarted)


@dataclass(frozen=True)
class DescribeReply:
    node: str
    time_ns: int
    cameras: tuple[CameraInfo, ...]
    # Invalid optional fields of described cameras, ignored as if absent (the first few, then how
    # many more): for the receiver to report. Not part of the message: equal replies may differ.
    ignored: tuple[str, ...] = field(default=(), compare=False)


Message = Frame | Status | DescribeRequest | DescribeReply | PullRequest

STATES = tuple(s.value for s in State)
DELIVERIES = tuple(d.value for d in Delivery)


# ----------------------------------------------------------------------------- encoding


def _pack(kind: Kind, header: dict[str, Any], payload: bytes | memoryview = b"", packer: Any = None) -> bytes:
    try:
        packed = packer.pack(header) if packer is not None else msgpack.packb(header, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. an object or a 2**64 in meta
        raise ProtocolError(f"header cannot be encoded: {exc}") from None
    if len(packed) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(packed)} bytes exceeds {MAX_HEADER_BYTES}")
    return b"".join((PREFIX.pack(MAGIC, VERSION, kind, len(packed)), packed, payload))


def _frame_header_dict(h: FrameHeader) -> dict[str, Any]:
    d: dict[str, Any] = {
        "camera": h.camera,
        "seq": h.seq,
        "capture_ns": h.capture_ns,
        "publish_ns": h.publish_ns,
        "width": h.width,
        "height": h.height,
        "encoding": h.encoding,
    }
    if h.meta:  # checked at the sender, not at every receiver
        d["meta"] = checked_meta(dict(h.meta) if isinstance(h.meta, Mapping) else h.meta, "frame header")
    return d


def encode_frame(header: FrameHeader, jpeg: bytes | memoryview) -> bytes:
    return _pack(Kind.FRAME, _frame_header_dict(header), jpeg)


class FrameEncoder:
    """encode_frame's bytes for one stream's frames without meta, for less per frame: one header
    dict and one msgpack Packer, reused (the relay's profile: a FrameHeader, a fresh dict and
    packb's fresh Packer cost ~3x this). Owned by one thread, as its stream's socket is."""

    def __init__(self, camera: str) -> None:
        self._header: dict[str, Any] = {
            "camera": camera,
            "seq": 0,
            "capture_ns": 0,
            "publish_ns": 0,
            "width": 0,
            "height": 0,
            "encoding": ENCODING_JPEG,
        }
        self._packer = msgpack.Packer(use_bin_type=True)

    def encode(
        self, seq: int, capture_ns: int, publish_ns: int, size: tuple[int, int], jpeg: bytes | memoryview
    ) -> bytes:
        h = self._header
        h["seq"], h["capture_ns"], h["publish_ns"], h["width"], h["height"] = seq, capture_ns, publish_ns, *size
        return _pack(Kind.FRAME, h, jpeg, self._packer)


def encode_status(status: Status) -> bytes:
    d: dict[str, Any] = {
        "camera": status.camera,
        "state": status.state,
        "publish_ns": status.publish_ns,
        "last_seq": status.last_seq,
        "reason": redact(status.reason)[:MAX_STATUS_TEXT],  # whoever wrote it, no password leaves
        "attempt": min(status.attempt, MAX_ATTEMPT),
        "retry_in_s": float(status.retry_in_s),
    }
    payload: bytes | memoryview = b""
    if status.frame is not None:
        d["frame"] = _frame_header_dict(status.frame.header)
        payload = status.frame.jpeg
    return _pack(Kind.STATUS, d, payload)


def encode_describe_request() -> bytes:
    return _pack(Kind.DESCRIBE_REQUEST, {})


def encode_pull_request(after_seq: int, pool: str = "", result: PoolResult | None = None, member: str = "") -> bytes:
    d: dict[str, Any] = {"after_seq": after_seq}
    if pool:
        d["pool"] = pool
    if member:
        d["member"] = member
    payload: bytes | memoryview = b""
    if result is not None:
        r: dict[str, Any] = {"seq": result.seq}
        if result.meta:
            r["meta"] = checked_meta(dict(result.meta), "pool result")
        if result.jpeg is not None and result.size is not None:
            r["width"], r["height"] = result.size
            payload = result.jpeg
        d["result"] = r
    return _pack(Kind.PULL_REQUEST, d, payload)


def encode_describe_reply(reply: DescribeReply) -> bytes:
    cams = [
        {
            "camera": c.camera,
            "endpoint": c.endpoint,
            "width": c.width,
            "height": c.height,
            "fps": float(c.fps),
            "state": c.state,
            "delivery": c.delivery,
            "reason": redact(c.reason)[:MAX_STATUS_TEXT],
            "pull_endpoint": c.pull_endpoint,
            "published_fps": float(c.published_fps),
            "reconnects": c.reconnects,
        }
        for c in reply.cameras
    ]
    return _pack(Kind.DESCRIBE_REPLY, {"node": reply.node, "time_ns": reply.time_ns, "cameras": cams})


# ----------------------------------------------------------------------------- decoding


def decode(message: bytes | memoryview) -> Message:
    """Parse one message; raises ProtocolError (and nothing else) for malformed input, whatever
    the bytes. The work is bounded by MAX_HEADER_OBJECTS, not by the message."""
    try:
        return _decode(message)
    except ProtocolError:
        raise
    except Exception as exc:
        # A bug of this decoder, not of the peer: the caller still gets the one exception its
        # contract names, chained (`from exc`) so that the tests, which require no cause, see it.
        log.debug("decoder bug", exc_info=True)
        raise ProtocolError(f"message not understood ({type(exc).__name__}: {str(exc)[:200]})") from exc


def _decode(message: bytes | memoryview) -> Message:
    view = memoryview(message)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    if len(view) < PREFIX.size:
        raise ProtocolError(f"message of {len(view)} bytes is shorter than the {PREFIX.size}-byte prefix")
    magic, version, kind, header_len = PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version}, this side speaks {VERSION}")
    if header_len > MAX_HEADER_BYTES:
        raise ProtocolError(f"declared header length {header_len} exceeds {MAX_HEADER_BYTES}")
    end = PREFIX.size + header_len
    if end > len(view):
        raise ProtocolError(f"declared header length {header_len} runs past the message end")
    if kind not in MAX_HEADER_OBJECTS:
        raise ProtocolError(f"unknown message kind {kind}")
    kind = Kind(kind)
    header = _unpack_map(bytes(view[PREFIX.size : end]), kind)
    payload = view[end:]
    if kind == Kind.FRAME:
        return Frame(_frame_header(header), checked_jpeg(payload))
    if kind == Kind.STATUS:
        return _status(header, payload)
    if kind == Kind.DESCRIBE_REQUEST:
        _no_payload(payload, "describe request")
        return DescribeRequest()
    if kind == Kind.PULL_REQUEST:
        return _pull_request(header, payload)
    _no_payload(payload, "describe reply")
    return _describe_reply(header)


def _unpack_map(raw: bytes, kind: Kind) -> dict[str, Any]:
    budget = MAX_HEADER_OBJECTS[kind]
    if len(raw) > budget:  # msgpack would build all that 64 KiB declares; shorter bytes hold fewer objects
        try:
            check_size(raw, budget)
        except ShapeError as exc:
            raise ProtocolError(f"{kind.name.lower()} header is not valid msgpack within its limits: {exc}") from None
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except msgpack.StackError:
        raise ProtocolError("header is not valid msgpack: nested deeper than 1024 levels") from None
    except Exception as exc:  # msgpack raises many types for garbage; all mean "malformed"
        raise ProtocolError(f"header is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"header must be a msgpack map, got {type(value).__name__}")
    return value


def _no_payload(payload: memoryview, what: str) -> None:
    if len(payload):
        raise ProtocolError(f"{what} must have no payload, got {len(payload)} bytes")


def _frame_header(h: Mapping[str, Any]) -> FrameHeader:
    where = "frame header"
    camera = validate_camera_id(field_of(h, "camera", str, where))
    encoding = text_field(h, "encoding", where, 16)
    if encoding != ENCODING_JPEG:
        raise ProtocolError(f"{where}: unsupported encoding {encoding!r}")
    meta = checked_meta(h.get("meta", {}), where)
    return FrameHeader(
        camera=camera,
        seq=int_in(h, "seq", 0, U64_MAX, where),
        capture_ns=ns_field(h, "capture_ns", where),
        publish_ns=ns_field(h, "publish_ns", where),
        width=int_in(h, "width", 1, MAX_DIMENSION, where),
        height=int_in(h, "height", 1, MAX_DIMENSION, where),
        encoding=encoding,
        meta=meta,
    )


def _pull_request(h: Mapping[str, Any], payload: memoryview) -> PullRequest:
    where = "pull request"
    after_seq = int_in(h, "after_seq", -1, U64_MAX, where)
    pool = validate_pool_name(field_of(h, "pool", str, where)) if "pool" in h else ""
    member = _member_token(h, pool) if "member" in h else ""
    if "result" not in h:
        _no_payload(payload, "pull request without a result")
        return PullRequest(after_seq, pool, member=member)
    if not pool:
        raise ProtocolError(f"{where}: a 'result' needs a 'pool'")
    r = field_of(h, "result", dict, where)
    where = "pull request: result"
    sized = "width" in r or "height" in r
    size = (
        (int_in(r, "width", 1, MAX_DIMENSION, where), int_in(r, "height", 1, MAX_DIMENSION, where)) if sized else None
    )
    if size is None:
        _no_payload(payload, "pool result without width and height")
    result = PoolResult(
        seq=int_in(r, "seq", 0, U64_MAX, where),
        meta=checked_meta(r.get("meta", {}), where),
        size=size,
        jpeg=checked_jpeg(payload) if size is not None else None,
    )
    return PullRequest(after_seq, pool, result, member)


def _member_token(h: Mapping[str, Any], pool: str) -> str:
    token = field_of(h, "member", str, "pull request")
    if not pool:
        raise ProtocolError("pull request: a 'member' needs a 'pool'")
    if not MEMBER_TOKEN_PATTERN.fullmatch(token):
        raise ProtocolError(f"pull request: member token {shown(token)} is invalid: use 1-64 of [A-Za-z0-9_.-]")
    return token


def _status(h: Mapping[str, Any], payload: memoryview) -> Status:
    where = "status header"
    state = text_field(h, "state", where, 32)
    if state not in STATES:
        raise ProtocolError(f"{where}: unknown state {state!r}")
    retry = field_of(h, "retry_in_s", (int, float), where)
    if not 0 <= retry <= 86400:
        raise ProtocolError(f"{where}: field 'retry_in_s'={retry} is outside [0, 86400]")
    frame = None
    if "frame" in h:
        sub = h["frame"]
        if not isinstance(sub, dict):
            raise ProtocolError(f"{where}: field 'frame' must be a map")
        frame = Frame(_frame_header(sub), checked_jpeg(payload))
        if frame.header.camera != h.get("camera"):
            raise ProtocolError(
                f"{where}: the attached frame is of camera {frame.header.camera!r}, not {shown(h.get('camera'))}"
            )
    else:
        _no_payload(payload, "status without a frame")
    return Status(
        camera=validate_camera_id(field_of(h, "camera", str, where)),
        state=state,
        publish_ns=ns_field(h, "publish_ns", where),
        last_seq=int_in(h, "last_seq", -1, U64_MAX, where),
        reason=text_field(h, "reason", where),
        attempt=int_in(h, "attempt", 0, MAX_ATTEMPT, where),
        retry_in_s=float(retry),
        frame=frame,
    )


def _describe_reply(h: Mapping[str, Any]) -> DescribeReply:
    where = "describe reply"
    cams = field_of(h, "cameras", list, where)
    if len(cams) > MAX_CAMERAS:
        raise ProtocolError(f"{where}: {len(cams)} cameras is more than {MAX_CAMERAS}")
    infos = []
    ignored: list[str] = []
    for i, c in enumerate(cams):
        w = f"{where}: cameras[{i}]"
        if not isinstance(c, dict):
            raise ProtocolError(f"{w} must be a map")
        state = text_field(c, "state", w, 32)
        delivery = text_field(c, "delivery", w, 32)
        if state not in STATES:
            raise ProtocolError(f"{w}: unknown state {state!r}")
        if delivery not in DELIVERIES:
            raise ProtocolError(f"{w}: unknown delivery {delivery!r}")
        fps = field_of(c, "fps", (int, float), w)
        if not 0 <= fps <= 1000:
            raise ProtocolError(f"{w}: field 'fps'={fps} is outside [0, 1000]")
        endpoint = endpoint_field(c, "endpoint", w)
        infos.append(
            CameraInfo(
                camera=validate_camera_id(field_of(c, "camera", str, w)),
                endpoint=endpoint,
                width=int_in(c, "width", 0, MAX_DIMENSION, w),
                height=int_in(c, "height", 0, MAX_DIMENSION, w),
                fps=float(fps),
                state=state,
                delivery=delivery,
                reason=_optional(c, "reason", "", text_field, w, ignored),
                pull_endpoint=_optional(c, "pull_endpoint", "", _pull_endpoint, w, ignored),
                published_fps=_optional(c, "published_fps", 0.0, _rate, w, ignored),
                reconnects=_optional(c, "reconnects", 0, _count, w, ignored),
            )
        )
    if len(ignored) > MAX_IGNORED_SHOWN:
        ignored[MAX_IGNORED_SHOWN:] = [f"and {len(ignored) - MAX_IGNORED_SHOWN} more"]
    return DescribeReply(
        node=text_field(h, "node", where, MAX_NODE_NAME),
        time_ns=ns_field(h, "time_ns", where),
        cameras=tuple(infos),
        ignored=tuple(ignored),
    )


def _optional(
    entry: Mapping[str, Any],
    name: str,
    default: T,
    read: Callable[[Mapping[str, Any], str, str], T],
    where: str,
    ignored: list[str],
) -> T:
    """A described camera's optional field only informs (why it is down, how it is doing, where
    to pull from): an invalid one is ignored as if absent, and noted, so that one bad value does
    not hide the node's every camera. Required fields, and fields that carry data (a frame's
    `meta`, a status's `frame`), still make the whole message malformed."""
    if name not in entry:
        return default
    try:
        return read(entry, name, where)
    except ProtocolError as exc:
        ignored.append(str(exc))
        return default


def _pull_endpoint(entry: Mapping[str, Any], name: str, where: str) -> str:
    """The empty string says "no pull mode", as absence does; any other value is an endpoint."""
    return "" if entry[name] == "" else endpoint_field(entry, name, where)


def _rate(entry: Mapping[str, Any], name: str, where: str) -> float:
    return optional_number(entry, name, 0, 1000, where)


def _count(entry: Mapping[str, Any], name: str, where: str) -> int:
    return int_in(entry, name, 0, U64_MAX, where)
