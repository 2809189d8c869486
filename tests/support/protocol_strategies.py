"""Hypothesis strategies for hostile and valid wire messages (tests/test_protocol.py): values
nested up to msgpack's 1024 levels and past it, containers around every budget, and valid
headers of every kind with one field, or a nested one, made wrong.

Values deeper than msgpack's packer goes (511 levels) are built as bytes: a header is packed with
a placeholder where the deep value goes, and the placeholder's bytes are then replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
from hypothesis import strategies as st

from framebus.common.fields import MAX_META_DEPTH, MAX_META_KEYS, MAX_META_VALUES
from framebus.common.protocol import MAX_CAMERAS, MAX_HEADER_OBJECTS, Kind
from tests.support.wire import DROP, camera_entry, frame_dict, raw, reply_dict, status_dict

U64 = 2**64 - 1
I64_MIN = -(2**63)
JPEGS = (b"\xff\xd8\xff\xd9", b"\xff\xd8\xff\xe0" + bytes(32) + b"\xff\xd9")
PLACEHOLDER = msgpack.ExtType(77, b"\x00framebus-placeholder\x00")
PLACEHOLDER_BYTES = msgpack.packb(PLACEHOLDER)


@dataclass(frozen=True)
class Packed:
    """msgpack bytes to put in a header as they are (too deep for msgpack's packer)."""

    data: bytes
    what: str

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep them short
        return f"Packed({self.what}, {len(self.data)} bytes)"


def pack(header: Any) -> bytes:
    """A header with Packed values in it (at most one), as msgpack bytes."""
    found: list[Packed] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Packed):
            found.append(value)
            return PLACEHOLDER
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    packed: bytes = msgpack.packb(swap(header), use_bin_type=True)
    for value in found:
        packed = packed.replace(PLACEHOLDER_BYTES, value.data, 1)
    return packed


# ----------------------------------------------------------------------------- values

small_ints = st.sampled_from([0, 1, -1, 127, 128, 255, 256, 65535, 65536, 2**31, 2**32, I64_MIN, U64, U64 - 1])
huge_ints = st.integers(I64_MIN, U64) | small_ints
floats = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308])
# Strings a field may not hold: control and format characters, separators, lone surrogates are
# left out (msgpack cannot encode them as UTF-8); long ones.
unprintable = st.text(st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Co"]), min_size=1, max_size=8)
texts = st.text(max_size=40) | unprintable | st.builds(lambda n: "x" * n, st.integers(0, 70_000))
scalars = (
    st.none()
    | st.booleans()
    | huge_ints
    | floats
    | texts
    | st.binary(max_size=40)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=16))
    | st.builds(msgpack.Timestamp, st.integers(-(2**33), 2**34), st.integers(0, 999_999_999))
)
keys = st.text(max_size=12) | st.binary(max_size=4) | unprintable
# Everything msgpack packs, nested a little (st.recursive), including what no field accepts.
any_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(keys, children, max_size=6),
    max_leaves=24,
)


@st.composite
def deep_values(draw: st.DrawFn, max_levels: int = 1030) -> Packed:
    """Containers nested up to msgpack's 1024 levels and a little past them: lists, one-key maps
    or a cycle of both, each optionally with a sibling entry (wider as well as deeper)."""
    levels = draw(st.integers(0, max_levels) | st.sampled_from([15, 16, 17, 499, 500, 1021, 1022, 1023, 1024, 1025]))
    levels = min(levels, max_levels)
    pattern = draw(st.lists(st.sampled_from(["list", "map"]), min_size=1, max_size=3))
    sibling = draw(st.none() | scalars)
    extra = b"" if sibling is None else msgpack.packb(sibling, use_bin_type=True)
    parts = []
    for level in range(levels):
        if pattern[level % len(pattern)] == "list":
            parts.append(b"\x92" + extra if extra else b"\x91")
        else:
            parts.append(b"\x82\xa1s" + extra + b"\xa1k" if extra else b"\x81\xa1k")
    leaf = msgpack.packb(draw(scalars | st.just([]) | st.just({})), use_bin_type=True)
    return Packed(b"".join(parts) + leaf, f"{levels} levels of {'/'.join(pattern)}")


def _count_header(count: int, kind: str) -> bytes:
    if kind == "list":
        return bytes([0x90 | count]) if count < 16 else b"\xdc" + count.to_bytes(2, "big")
    return bytes([0x80 | count]) if count < 16 else b"\xde" + count.to_bytes(2, "big")


@st.composite
def wide_values(draw: st.DrawFn) -> Packed:
    """One list or map of many small entries, around every count that is a limit."""
    near = [MAX_META_KEYS, MAX_META_VALUES, MAX_CAMERAS, *MAX_HEADER_OBJECTS.values()]
    base = draw(st.sampled_from([*near, *(n // 2 for n in near)]) | st.integers(0, 20_000))
    count = max(0, min(65_535, base + draw(st.integers(-2, 2))))
    kind = draw(st.sampled_from(["list", "map"]))
    item = draw(st.sampled_from([b"\x00", b"\xc0", b"\x90", b"\x80", b"\xa0", b"\xa1k"]))
    if kind == "map":  # distinct keys: 4 hex digits, or uint16s (which strict_map_key refuses)
        key = (lambda i: b"\xa4" + b"%04x" % i) if draw(st.booleans()) else (lambda i: b"\xcd" + i.to_bytes(2, "big"))
        body = b"".join(key(i) + item for i in range(count))
    else:
        body = item * count
    return Packed(_count_header(count, kind) + body, f"a {kind} of {count} x {item!r}")


hostile_values = any_values | deep_values() | wide_values()


@st.composite
def valid_metas(draw: st.DrawFn) -> dict[str, Any]:
    """Metas inside every limit, deep (a chain of up to MAX_META_DEPTH levels) or wide (up to
    MAX_META_VALUES values) or neither; values that round-trip with == (no NaN)."""
    leaves = st.none() | st.booleans() | st.integers(I64_MIN, U64) | st.floats(allow_nan=False) | st.text(max_size=8)
    plain = st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
        max_leaves=16,
    )
    meta: dict[str, Any] = draw(
        st.dictionaries(st.text(min_size=1, max_size=64).filter(str.isprintable), plain, max_size=6)
    )
    shape = draw(st.sampled_from(["plain", "deep", "wide"]))
    if shape == "deep":  # meta is the first level, a chain of up to 15 more around a scalar
        value: Any = draw(leaves)
        for _ in range(draw(st.integers(1, MAX_META_DEPTH - 1))):
            value = [value] if draw(st.booleans()) else {"k": value}
        meta["deep"] = value
    elif shape == "wide":
        room = MAX_META_VALUES - len(meta)
        meta["wide"] = [draw(st.integers(0, 3))] * draw(st.integers(0, room - 1) | st.just(room - 1))
        while _values_in(meta) > MAX_META_VALUES:  # the drawn values themselves count too
            meta["wide"].pop()
    return meta


def _values_in(meta: Any) -> int:
    count, todo = 0, [meta]
    while todo:
        value = todo.pop()
        if isinstance(value, (dict, list)):
            count += len(value)
            todo += value.values() if isinstance(value, dict) else value
    return count


# ----------------------------------------------------------------------------- headers


def frame_fields() -> dict[str, Any]:
    return frame_dict(meta={"exposure_us": 800, "tags": ["a", "b"]})


def camera_fields(i: int) -> dict[str, Any]:
    """A described camera with every optional field too."""
    return camera_entry(
        f"cam{i}",
        f"tcp://127.0.0.1:{5556 + i}",
        reason="",
        pull_endpoint=f"tcp://127.0.0.1:{6556 + i}",
        published_fps=29.5,
        reconnects=2,
    )


def valid_header(kind: Kind, with_frame: bool = True, cameras: int = 2) -> tuple[dict[str, Any], bytes]:
    """A valid header of `kind` and a payload that goes with it."""
    if kind == Kind.FRAME:
        return frame_fields(), JPEGS[1]
    if kind == Kind.STATUS:
        return status_dict(frame=frame_fields() if with_frame else DROP), JPEGS[1] if with_frame else b""
    if kind == Kind.DESCRIBE_REPLY:
        return reply_dict([camera_fields(i) for i in range(cameras)]), b""
    if kind == Kind.PULL_REQUEST:
        return {"after_seq": 41}, b""
    return {}, b""


def _places(header: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every (map, key) of a header a mutation may target: its fields, a status's frame's, the
    described cameras', meta's keys; each also under a name it does not have (an extra field)."""
    maps: list[dict[str, Any]] = [header]
    for value in list(header.values()):
        if isinstance(value, dict):
            maps.append(value)
            maps += [v for v in value.values() if isinstance(v, dict)]
        elif isinstance(value, list):
            maps += [v for v in value if isinstance(v, dict)]
    return [(m, key) for m in maps for key in [*m, "unexpected"]]


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    """A valid message of any kind with one structure-aware change: a field (at any level)
    replaced by a value of another type, a huge or non-finite number, unprintable text, bytes,
    something deep or wide; or removed; or an extra field added. Sometimes two changes."""
    kind = draw(st.sampled_from(list(Kind)))
    header, payload = valid_header(kind, with_frame=draw(st.booleans()), cameras=draw(st.integers(0, 3)))
    for _ in range(draw(st.integers(1, 2))):
        places = _places(header)
        target, key = draw(st.sampled_from(places))
        if draw(st.integers(0, 5)) == 0 and key in target:
            del target[key]
        else:
            target[key] = draw(hostile_values)
    payload = draw(st.sampled_from([payload, payload, b"", *JPEGS, JPEGS[1][:-1]]))
    return raw(kind, pack(header), payload)


@st.composite
def deep_or_wide_headers(draw: st.DrawFn) -> bytes:
    """A header of any kind whose whole value, or one field at any level, is deep or wide."""
    kind = draw(st.sampled_from(list(Kind)))
    header, payload = valid_header(kind, with_frame=draw(st.booleans()))
    value = draw(deep_values() | wide_values())
    if draw(st.integers(0, 4)) == 0:
        return raw(kind, value.data, payload)
    target, key = draw(st.sampled_from(_places(header)))
    target[key] = value
    return raw(kind, pack(header), payload)
