"""The framebus wire format: one ZeroMQ message per frame, status or control exchange.

Every message is ``prefix (8 bytes) | msgpack header | payload``. The prefix carries the
header length so that the payload (a JPEG) is found by slicing, never copied and never
pushed through msgpack. ``docs/protocol.md`` is the byte-level specification; keep the two
in step.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgpack

MAGIC = b"FB"
VERSION = 1
PREFIX = struct.Struct("<2sBBI")  # magic, version, kind, header length
MAX_HEADER_BYTES = 64 * 1024
MAX_DIMENSION = 16384
MAX_STATUS_TEXT = 512
MAX_META_KEYS = 256
MAX_META_DEPTH = 16
CAMERA_ID_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}(/[A-Za-z0-9_.\-]{1,64}){0,3}")
ENCODING_JPEG = "jpeg"
_U64_MAX = 2**64 - 1


class Kind(IntEnum):
    FRAME = 1
    STATUS = 2
    DESCRIBE_REQUEST = 3
    DESCRIBE_REPLY = 4
    PULL_REQUEST = 5


class ProtocolError(ValueError):
    """Raised for any message that does not follow docs/protocol.md."""


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
class PullRequest:
    """Pull mode: "send me the newest frame with a sequence number above after_seq"."""

    after_seq: int = -1


@dataclass(frozen=True)
class CameraInfo:
    camera: str
    endpoint: str
    width: int
    height: int
    fps: float
    state: str
    delivery: str  # "latest" (conflated) or "every-frame" (lossless, back-pressured)
    reason: str = ""  # why the camera is not streaming (redacted), empty when it is
    pull_endpoint: str = ""  # where pull requests are answered; empty: no pull mode
    published_fps: float = 0.0  # frames published per second, lately
    reconnects: int = 0  # times the stream died and was reopened (or the capture restarted)


@dataclass(frozen=True)
class DescribeReply:
    node: str
    time_ns: int
    cameras: tuple[CameraInfo, ...]


Message = Frame | Status | DescribeRequest | DescribeReply | PullRequest

STATES = ("streaming", "connecting", "reconnecting", "source-error", "ended", "stopped")
DELIVERIES = ("latest", "every-frame")


# ----------------------------------------------------------------------------- encoding


def _pack(kind: Kind, header: dict[str, Any], payload: bytes | memoryview = b"") -> bytes:
    packed = msgpack.packb(header, use_bin_type=True)
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
    if h.meta:
        d["meta"] = _checked_meta(dict(h.meta), "frame header")  # fail at the sender, not at every receiver
    return d


def encode_frame(header: FrameHeader, jpeg: bytes | memoryview) -> bytes:
    return _pack(Kind.FRAME, _frame_header_dict(header), jpeg)


def encode_status(status: Status) -> bytes:
    d: dict[str, Any] = {
        "camera": status.camera,
        "state": status.state,
        "publish_ns": status.publish_ns,
        "last_seq": status.last_seq,
        "reason": status.reason,
        "attempt": status.attempt,
        "retry_in_s": float(status.retry_in_s),
    }
    payload: bytes | memoryview = b""
    if status.frame is not None:
        d["frame"] = _frame_header_dict(status.frame.header)
        payload = status.frame.jpeg
    return _pack(Kind.STATUS, d, payload)


def encode_describe_request() -> bytes:
    return _pack(Kind.DESCRIBE_REQUEST, {})


def encode_pull_request(after_seq: int) -> bytes:
    return _pack(Kind.PULL_REQUEST, {"after_seq": after_seq})


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
            "reason": c.reason,
            "pull_endpoint": c.pull_endpoint,
            "published_fps": float(c.published_fps),
            "reconnects": c.reconnects,
        }
        for c in reply.cameras
    ]
    return _pack(Kind.DESCRIBE_REPLY, {"node": reply.node, "time_ns": reply.time_ns, "cameras": cams})


# ----------------------------------------------------------------------------- decoding


def decode(message: bytes | memoryview) -> Message:
    """Parse one message; raises ProtocolError (and nothing else) for malformed input."""
    view = memoryview(message)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
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
    header = _unpack_map(view[PREFIX.size : end])
    payload = view[end:]
    if kind == Kind.FRAME:
        return Frame(_frame_header(header), _checked_jpeg(payload))
    if kind == Kind.STATUS:
        return _status(header, payload)
    if kind == Kind.DESCRIBE_REQUEST:
        _no_payload(payload, "describe request")
        return DescribeRequest()
    if kind == Kind.PULL_REQUEST:
        _no_payload(payload, "pull request")
        return PullRequest(_int_in(header, "after_seq", -1, _U64_MAX, "pull request"))
    if kind == Kind.DESCRIBE_REPLY:
        _no_payload(payload, "describe reply")
        return _describe_reply(header)
    raise ProtocolError(f"unknown message kind {kind}")


def _unpack_map(raw: memoryview) -> dict[str, Any]:
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises many types for garbage; all mean "malformed"
        raise ProtocolError(f"header is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"header must be a msgpack map, got {type(value).__name__}")
    return value


def _no_payload(payload: memoryview, what: str) -> None:
    if len(payload):
        raise ProtocolError(f"{what} must have no payload, got {len(payload)} bytes")


def _field(header: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in header:
        raise ProtocolError(f"{where}: missing field {name!r}")
    value = header[name]
    # bool is an int in Python; never accept it where a number is meant.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ProtocolError(f"{where}: field {name!r} must be {_kind_name(kind)}, got bool")
    if not isinstance(value, kind):
        raise ProtocolError(f"{where}: field {name!r} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _int_in(header: Mapping[str, Any], name: str, lo: int, hi: int, where: str) -> int:
    value: int = _field(header, name, int, where)
    if not lo <= value <= hi:
        raise ProtocolError(f"{where}: field {name!r}={value} is outside [{lo}, {hi}]")
    return value


def _text(header: Mapping[str, Any], name: str, where: str, limit: int = MAX_STATUS_TEXT) -> str:
    value: str = _field(header, name, str, where)
    if len(value) > limit:
        raise ProtocolError(f"{where}: field {name!r} is longer than {limit} characters")
    if not value.isprintable():
        raise ProtocolError(f"{where}: field {name!r} contains non-printable characters")
    return value


def validate_camera_id(camera: object) -> str:
    """Camera ids end up in file names and metric labels: allow a safe charset only."""
    if not isinstance(camera, str) or not CAMERA_ID_PATTERN.fullmatch(camera):
        raise ProtocolError(
            f"camera id {str(camera)[:80]!r} is invalid: use 1-64 of [A-Za-z0-9_.-], "
            "optionally up to 4 such parts joined by '/'"
        )
    if any(part in (".", "..") for part in camera.split("/")):
        raise ProtocolError(f"camera id {camera!r} may not contain '.' or '..' parts")
    return camera


def _frame_header(h: Mapping[str, Any]) -> FrameHeader:
    where = "frame header"
    camera = validate_camera_id(_field(h, "camera", str, where))
    encoding = _text(h, "encoding", where, 16)
    if encoding != ENCODING_JPEG:
        raise ProtocolError(f"{where}: unsupported encoding {encoding!r}")
    meta = _checked_meta(h.get("meta", {}), where)
    return FrameHeader(
        camera=camera,
        seq=_int_in(h, "seq", 0, _U64_MAX, where),
        capture_ns=_int_in(h, "capture_ns", 0, _U64_MAX, where),
        publish_ns=_int_in(h, "publish_ns", 0, _U64_MAX, where),
        width=_int_in(h, "width", 1, MAX_DIMENSION, where),
        height=_int_in(h, "height", 1, MAX_DIMENSION, where),
        encoding=encoding,
        meta=meta,
    )


def _checked_meta(meta: object, where: str) -> dict[str, Any]:
    """User metadata passes through to user code: text keys that print, a bounded shape."""
    if not isinstance(meta, dict):
        raise ProtocolError(f"{where}: field 'meta' must be a map, got {type(meta).__name__}")
    if len(meta) > MAX_META_KEYS:
        raise ProtocolError(f"{where}: 'meta' has {len(meta)} keys, at most {MAX_META_KEYS} allowed")
    for key in meta:
        if not isinstance(key, str) or not key.isprintable() or not 0 < len(key) <= 64:
            raise ProtocolError(f"{where}: 'meta' key {key!r} must be printable text of 1-64 characters")
    if _depth(meta) > MAX_META_DEPTH:
        raise ProtocolError(f"{where}: 'meta' is nested deeper than {MAX_META_DEPTH} levels")
    return meta


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _checked_jpeg(payload: memoryview) -> memoryview:
    # A JPEG starts with SOI (FF D8) and ends with EOI (FF D9); anything else is not one.
    if len(payload) < 4 or payload[0] != 0xFF or payload[1] != 0xD8:
        raise ProtocolError(f"payload of {len(payload)} bytes is not a JPEG (no SOI marker)")
    if payload[-2] != 0xFF or payload[-1] != 0xD9:
        raise ProtocolError("JPEG payload is truncated (no EOI marker)")
    return payload


def _status(h: Mapping[str, Any], payload: memoryview) -> Status:
    where = "status header"
    state = _text(h, "state", where, 32)
    if state not in STATES:
        raise ProtocolError(f"{where}: unknown state {state!r}")
    retry = _field(h, "retry_in_s", (int, float), where)
    if not 0 <= retry <= 86400:
        raise ProtocolError(f"{where}: field 'retry_in_s'={retry} is outside [0, 86400]")
    frame = None
    if "frame" in h:
        sub = h["frame"]
        if not isinstance(sub, dict):
            raise ProtocolError(f"{where}: field 'frame' must be a map")
        frame = Frame(_frame_header(sub), _checked_jpeg(payload))
        if frame.header.camera != h.get("camera"):
            raise ProtocolError(
                f"{where}: the attached frame is of camera {frame.header.camera!r}, not {h.get('camera')!r}"
            )
    else:
        _no_payload(payload, "status without a frame")
    return Status(
        camera=validate_camera_id(_field(h, "camera", str, where)),
        state=state,
        publish_ns=_int_in(h, "publish_ns", 0, _U64_MAX, where),
        last_seq=_int_in(h, "last_seq", -1, _U64_MAX, where),
        reason=_text(h, "reason", where),
        attempt=_int_in(h, "attempt", 0, 2**31, where),
        retry_in_s=float(retry),
        frame=frame,
    )


def _optional_number(h: Mapping[str, Any], name: str, lo: float, hi: float, where: str) -> float:
    if name not in h:
        return 0.0
    value = _field(h, name, (int, float), where)
    if not lo <= value <= hi:
        raise ProtocolError(f"{where}: field {name!r}={value} is outside [{lo}, {hi}]")
    return float(value)


def _endpoint(h: Mapping[str, Any], name: str, where: str) -> str:
    endpoint = _text(h, name, where, 256)
    if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        raise ProtocolError(f"{where}: {name} {endpoint!r} is not a tcp://, ipc:// or inproc:// address")
    return endpoint


def _describe_reply(h: Mapping[str, Any]) -> DescribeReply:
    where = "describe reply"
    cams = _field(h, "cameras", list, where)
    if len(cams) > 1024:
        raise ProtocolError(f"{where}: {len(cams)} cameras is more than 1024")
    infos = []
    for i, c in enumerate(cams):
        w = f"{where}: cameras[{i}]"
        if not isinstance(c, dict):
            raise ProtocolError(f"{w} must be a map")
        state = _text(c, "state", w, 32)
        delivery = _text(c, "delivery", w, 32)
        if state not in STATES:
            raise ProtocolError(f"{w}: unknown state {state!r}")
        if delivery not in DELIVERIES:
            raise ProtocolError(f"{w}: unknown delivery {delivery!r}")
        fps = _field(c, "fps", (int, float), w)
        if not 0 <= fps <= 1000:
            raise ProtocolError(f"{w}: field 'fps'={fps} is outside [0, 1000]")
        endpoint = _endpoint(c, "endpoint", w)
        infos.append(
            CameraInfo(
                camera=validate_camera_id(_field(c, "camera", str, w)),
                endpoint=endpoint,
                width=_int_in(c, "width", 0, MAX_DIMENSION, w),
                height=_int_in(c, "height", 0, MAX_DIMENSION, w),
                fps=float(fps),
                state=state,
                delivery=delivery,
                reason=_text(c, "reason", w) if "reason" in c else "",
                pull_endpoint=_endpoint(c, "pull_endpoint", w) if c.get("pull_endpoint") else "",
                published_fps=_optional_number(c, "published_fps", 0, 1000, w),
                reconnects=_int_in(c, "reconnects", 0, _U64_MAX, w) if "reconnects" in c else 0,
            )
        )
    return DescribeReply(
        node=_text(h, "node", where, 128),
        time_ns=_int_in(h, "time_ns", 0, _U64_MAX, where),
        cameras=tuple(infos),
    )
