"""The header scan (common/msgpack_shape.py) agrees with msgpack on every input, counts exactly,
refuses a declared size before reading it, and never recurses."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framebus.common.msgpack_shape import MAX_DEPTH, ShapeError, check_size
from tests.fuzz.shape_oracle import check_shape_agrees
from tests.support.protocol_strategies import any_values, deep_values, wide_values

AGREE = settings(max_examples=500, deadline=None, derandomize=True, database=None)


@AGREE
@given(any_values)
def test_counts_exactly_what_msgpack_builds(value: object) -> None:
    check_shape_agrees(msgpack.packb(value, use_bin_type=True))


@AGREE
@given(deep_values() | wide_values())
def test_deep_and_wide_values(value: object) -> None:
    check_shape_agrees(value.data)  # type: ignore[attr-defined]


@AGREE
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    check_shape_agrees(data)


@AGREE
@given(any_values, st.data())
def test_truncated_extended_and_flipped(value: object, data: st.DataObject) -> None:
    packed = msgpack.packb(value, use_bin_type=True)
    check_shape_agrees(packed[: data.draw(st.integers(0, len(packed)))])
    check_shape_agrees(packed + data.draw(st.binary(min_size=1, max_size=4)))
    flipped = bytearray(packed)
    flipped[data.draw(st.integers(0, len(packed) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    check_shape_agrees(bytes(flipped))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", r"truncated: a value is missing at byte 0 of 0"),
        (b"\xc1", r"byte 0xc1 at 0 is not a msgpack type"),
        (b"\x92\x01", r"truncated: a value is missing at byte 2 of 2"),
        (b"\xda\x00\x05ab", r"truncated: the last value needs 8 bytes, there are 5"),
        (b"\x01\x02", r"1 extra bytes after the value"),
        (b"\xdd\xff\xff\xff\xff", r"a container of 4294967295 entries at byte 0: more than 1000 values"),
        (b"\xdf\xff\xff\xff\xff", r"a container of 4294967295 entries at byte 0: more than 1000 values"),
        (b"\x91" * 1001 + b"\xc0", r"more than 1000 values"),
    ],
)
def test_refusals_name_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(ShapeError, match=problem):
        check_size(data, 1000)


@pytest.mark.parametrize("innermost", [b"\xc0", b"\x90", b"\x80"], ids=["nil", "empty list", "empty map"])
def test_nesting_stops_where_msgpacks_does(innermost: bytes) -> None:
    """1024 containers, as msgpack (its unpacker's stack), an empty innermost one included;
    the 1025th is refused however deep the bytes go on, after reading no further."""
    lists = MAX_DEPTH - (innermost != b"\xc0")
    check_size(b"\x91" * lists + innermost, 2000)
    check_shape_agrees(b"\x91" * lists + innermost)
    for deep in (b"\x91" * (lists + 1) + innermost, b"\x91" * 500_000 + innermost):
        check_shape_agrees(deep)
        with pytest.raises(ShapeError, match="nested deeper than 1024 levels"):
            check_size(deep, 10**6)


def test_strings_are_skipped_not_counted() -> None:
    check_size(msgpack.packb(["x" * 60_000, b"y" * 60_000], use_bin_type=True), 3)
