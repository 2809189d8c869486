"""The field rules (common/fields.py): meta's shape checked without recursion and with work
bounded by its limits, and error messages that quote a peer's value without walking into it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from framebus.common.fields import (
    MAX_META_DEPTH,
    MAX_META_KEYS,
    MAX_META_VALUES,
    MAX_SHOWN,
    ProtocolError,
    checked_meta,
    shown,
    validate_camera_id,
)
from framebus.common.protocol import FrameHeader, encode_frame
from tests.support.protocol_strategies import any_values

JPEG = b"\xff\xd8\xff\xd9"


def chain(levels: int, container: str, leaf: object = 1) -> Any:
    """`levels` containers one inside the other, built without recursion (any depth)."""
    value: Any = leaf
    for _ in range(levels):
        value = [value] if container == "list" else {"k": value} if container == "map" else (value,)
    return value


@pytest.mark.parametrize("container", ["list", "map", "tuple"])
def test_meta_depth_limit_is_exact(container: str) -> None:
    assert checked_meta({"a": chain(MAX_META_DEPTH - 1, container)}, "here")
    with pytest.raises(ProtocolError, match=rf"here: 'meta' is nested deeper than {MAX_META_DEPTH} levels"):
        checked_meta({"a": chain(MAX_META_DEPTH, container)}, "here")


@pytest.mark.parametrize("container", ["list", "map", "tuple"])
def test_meta_of_any_depth_is_refused_without_recursion(container: str) -> None:
    deep = {"a": chain(200_000, container)}  # far past any recursion limit
    with pytest.raises(ProtocolError, match="nested deeper"):
        checked_meta(deep, "here")


def test_empty_containers_count_as_levels() -> None:
    with pytest.raises(ProtocolError, match="nested deeper"):
        checked_meta({"a": chain(MAX_META_DEPTH - 1, "list", leaf=[])}, "here")


def test_meta_values_limit_is_exact_and_counts_every_level() -> None:
    at_limit = {"a": [[0] * 100] * ((MAX_META_VALUES - 1) // 101)}
    at_limit["b"] = [0] * (MAX_META_VALUES - 2 - len(at_limit["a"]) * 101)
    assert checked_meta(at_limit, "here")
    at_limit["c"] = 0
    with pytest.raises(ProtocolError, match=rf"'meta' holds more than {MAX_META_VALUES} values"):
        checked_meta(at_limit, "here")


class NotToBeRead(list):  # type: ignore[type-arg]
    """A list that fails the test if anything iterates it."""

    def __iter__(self) -> Any:
        raise AssertionError("a container over the limit was read")


def test_a_wide_meta_is_refused_before_its_entries_are_read() -> None:
    with pytest.raises(ProtocolError, match="holds more than"):
        checked_meta({"a": NotToBeRead([0] * 10_000_000)}, "here")


def test_meta_keys() -> None:
    assert checked_meta({f"k{i}": i for i in range(MAX_META_KEYS)}, "here")
    with pytest.raises(ProtocolError, match=rf"{MAX_META_KEYS + 1} keys"):
        checked_meta({f"k{i}": i for i in range(MAX_META_KEYS + 1)}, "here")
    long_key = "k" * 70_000
    with pytest.raises(ProtocolError) as refused:
        checked_meta({long_key: 1}, "here")
    assert len(str(refused.value)) < 200, "a peer's key is quoted whole"
    with pytest.raises(ProtocolError, match=r"'meta' key a tuple must be printable"):
        checked_meta({chain(5000, "tuple"): 1}, "here")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("cam1", "'cam1'"),
        ("x" * 1000, "'" + "x" * MAX_SHOWN + "'..."),
        (b"\x00" * 1000, repr(b"\x00" * MAX_SHOWN) + "..."),
        (7, "7"),
        (1.5, "1.5"),
        (10**5000, "an int of 16610 bits"),  # str() of it raises ValueError
        (chain(100_000, "list"), "a list"),  # repr() of it raises RecursionError
        (chain(100_000, "map"), "a dict"),
        (None, "a NoneType"),
    ],
    ids=["text", "long text", "long bytes", "int", "float", "huge int", "deep list", "deep map", "None"],
)
def test_shown_quotes_a_value_briefly(value: object, expected: str) -> None:
    assert shown(value) == expected


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(any_values)
def test_shown_never_raises_and_stays_short(value: object) -> None:
    assert len(shown(value)) <= 4 * MAX_SHOWN + 8


def test_validate_camera_id_refuses_a_deep_value_in_one_line() -> None:
    with pytest.raises(ProtocolError, match=r"camera id a list is invalid"):
        validate_camera_id(chain(100_000, "list"))


# ----------------------------------------------------------------------------- at the sender


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        ({"a": chain(MAX_META_DEPTH, "tuple")}, "nested deeper than 16"),
        ({"a": chain(5000, "list")}, "nested deeper than 16"),
        ({"a": [0] * MAX_META_VALUES}, "holds more than"),
        ({"a": object()}, r"header cannot be encoded: can not serialize 'object' object"),
        ({"a": 2**64}, r"header cannot be encoded: Integer value out of range"),
        ({"a": -(2**63) - 1}, r"header cannot be encoded"),
        ({"a": {1, 2}}, r"header cannot be encoded"),
        ({1: "int key"}, r"'meta' key 1 must be printable text"),
        ("not a map", r"field 'meta' must be a map, got str"),
    ],
)
def test_the_encoder_refuses_a_bad_meta_with_protocol_error(meta: Any, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        encode_frame(FrameHeader("cam1", 1, 2, 3, 4, 5, meta=meta), JPEG)
