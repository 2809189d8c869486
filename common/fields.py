"""Rules for the fields of headers that come from the network: each value is checked for its
type, range and size before the rest of framebus sees it, and a failure says which field of
which message was wrong. common.protocol applies them; docs/protocol.md lists them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

U64_MAX = 2**64 - 1
MAX_STATUS_TEXT = 512
MAX_META_KEYS = 256
MAX_META_DEPTH = 16  # levels of maps and lists, 'meta' itself being the first
MAX_META_VALUES = 4096  # entries of every map and list in 'meta', at all levels
MAX_SHOWN = 80  # characters of a peer's value quoted in an error message
CAMERA_ID_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}(/[A-Za-z0-9_.\-]{1,64}){0,3}")
POOL_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # one part of a camera id: <camera>/<pool>


class ProtocolError(ValueError):
    """Raised for any message that does not follow docs/protocol.md."""


def field_of(header: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
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


def int_in(header: Mapping[str, Any], name: str, lo: int, hi: int, where: str) -> int:
    value: int = field_of(header, name, int, where)
    if not lo <= value <= hi:
        raise ProtocolError(f"{where}: field {name!r}={value} is outside [{lo}, {hi}]")
    return value


def ns_field(header: Mapping[str, Any], name: str, where: str) -> int:
    """A time in ns since the epoch: an int, or a float holding a whole number. Times pass 2**53,
    and msgpack libraries of languages whose numbers are doubles (JavaScript's) write such a
    number as a float64: taking it costs its last bits (256 ns today), refusing it costs every
    frame. Only times are taken this way; counts such as `seq` must be exact."""
    value = header.get(name)
    if not isinstance(value, float):
        return int_in(header, name, 0, U64_MAX, where)
    if not (math.isfinite(value) and value.is_integer()):
        raise ProtocolError(f"{where}: field {name!r}={value} is not a whole number of ns")
    if not 0 <= value <= U64_MAX:
        raise ProtocolError(f"{where}: field {name!r}={value} is outside [0, {U64_MAX}]")
    return int(value)


def text_field(header: Mapping[str, Any], name: str, where: str, limit: int = MAX_STATUS_TEXT) -> str:
    value: str = field_of(header, name, str, where)
    if len(value) > limit:
        raise ProtocolError(f"{where}: field {name!r} is longer than {limit} characters")
    if not value.isprintable():
        raise ProtocolError(f"{where}: field {name!r} contains non-printable characters")
    return value


def validate_camera_id(camera: object) -> str:
    """Camera ids end up in file names and metric labels: allow a safe charset only."""
    if not isinstance(camera, str) or not CAMERA_ID_PATTERN.fullmatch(camera):
        raise ProtocolError(
            f"camera id {shown(camera)} is invalid: use 1-64 of [A-Za-z0-9_.-], "
            "optionally up to 4 such parts joined by '/'"
        )
    if any(part in (".", "..") for part in camera.split("/")):
        raise ProtocolError(f"camera id {camera!r} may not contain '.' or '..' parts")
    return camera


def validate_pool_name(pool: object) -> str:
    """A pool's name becomes the last part of its stream's id (`door/faces`): one camera id part."""
    if not isinstance(pool, str) or not POOL_NAME_PATTERN.fullmatch(pool) or pool in (".", ".."):
        raise ProtocolError(
            f"pool name {shown(pool)} is invalid: use 1-64 of [A-Za-z0-9_.-] (not '.' or '..'), e.g. faces"
        )
    return pool


def shown(value: object) -> str:
    """A peer's value as an error message may quote it: short, and never a walk into a structure
    (repr of a 1000-deep list raises RecursionError; of a 64 KiB string, floods a log line)."""
    if isinstance(value, (str, bytes)):
        text = repr(value[:MAX_SHOWN])
        return text + "..." if len(value) > MAX_SHOWN else text
    if isinstance(value, int) and value.bit_length() > 128:  # str() of a huge int raises ValueError
        return f"an int of {value.bit_length()} bits"
    if isinstance(value, (int, float)):
        return repr(value)
    return f"a {type(value).__name__}"


def checked_meta(meta: object, where: str) -> dict[str, Any]:
    """User metadata passes through to user code: text keys that print, a bounded shape."""
    if not isinstance(meta, dict):
        raise ProtocolError(f"{where}: field 'meta' must be a map, got {type(meta).__name__}")
    if len(meta) > MAX_META_KEYS:
        raise ProtocolError(f"{where}: 'meta' has {len(meta)} keys, at most {MAX_META_KEYS} allowed")
    for key in meta:
        if not isinstance(key, str) or not key.isprintable() or not 0 < len(key) <= 64:
            raise ProtocolError(f"{where}: 'meta' key {shown(key)} must be printable text of 1-64 characters")
    _check_meta_shape(meta, where)
    return meta


def _check_meta_shape(meta: dict[Any, Any], where: str) -> None:
    """Depth and size level by level, never by recursion: a peer chooses both, and msgpack nests
    up to 1024 levels. A container's entries are counted before they are looked at, so the work
    stops at MAX_META_VALUES. Tuples count as lists: the encoder packs them as arrays."""
    values = 0
    level: list[Any] = [meta]
    depth = 1
    while level:
        inner: list[Any] = []
        for container in level:
            values += len(container)
            if values > MAX_META_VALUES:
                raise ProtocolError(f"{where}: 'meta' holds more than {MAX_META_VALUES} values")
            entries = container.values() if isinstance(container, dict) else container
            inner += [value for value in entries if isinstance(value, (dict, list, tuple))]
        if inner and depth == MAX_META_DEPTH:
            raise ProtocolError(f"{where}: 'meta' is nested deeper than {MAX_META_DEPTH} levels")
        level = inner
        depth += 1


def checked_jpeg(payload: memoryview) -> memoryview:
    # A JPEG starts with SOI (FF D8) and ends with EOI (FF D9); anything else is not one.
    if len(payload) < 4 or payload[0] != 0xFF or payload[1] != 0xD8:
        raise ProtocolError(f"payload of {len(payload)} bytes is not a JPEG (no SOI marker)")
    if payload[-2] != 0xFF or payload[-1] != 0xD9:
        raise ProtocolError("JPEG payload is truncated (no EOI marker)")
    return payload


def optional_number(h: Mapping[str, Any], name: str, lo: float, hi: float, where: str) -> float:
    if name not in h:
        return 0.0
    value = field_of(h, name, (int, float), where)
    if not lo <= value <= hi:
        raise ProtocolError(f"{where}: field {name!r}={value} is outside [{lo}, {hi}]")
    return float(value)


def endpoint_field(h: Mapping[str, Any], name: str, where: str) -> str:
    endpoint = text_field(h, name, where, 256)
    if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        raise ProtocolError(f"{where}: {name} {endpoint!r} is not a tcp://, ipc:// or inproc:// address")
    return endpoint
