"""common.msgpack_shape.check_size, checked against msgpack itself on the same bytes: both agree
on whether the bytes are one msgpack value, and check_size's budget is exactly the number of
objects msgpack builds. Used by the fuzzer on every input (decode() scans only headers longer
than their budget, so the fuzzer would rarely reach the scan otherwise) and by
tests/test_msgpack_shape.py."""

from __future__ import annotations

from typing import Any

import msgpack

from framebus.common.msgpack_shape import ShapeError, check_size


class ShapeOracleError(AssertionError):
    """check_size disagrees with msgpack."""


class _Map(tuple):  # type: ignore[type-arg]
    """A map as msgpack read it, as key-value pairs: hashable, so that it may itself be a key."""

    __slots__ = ()


def objects_in(data: bytes) -> int | None:
    """How many objects msgpack reads in `data` (map keys count), None if it is not exactly one
    value (or nests past 1024 levels), -1 if msgpack refuses it for something check_size does
    not look at (an extension type it will not build)."""
    try:
        value = msgpack.unpackb(data, raw=True, strict_map_key=False, use_list=False, object_pairs_hook=_Map)
    except msgpack.StackError:  # nested past 1024 levels: the scan refuses it too
        return None
    except ValueError as exc:  # an extension msgpack will not build: a bad timestamp (type -1), a type < -1
        return -1 if any(word in str(exc) for word in ("timestamp", "nanoseconds", "code must be")) else None
    count = 0
    todo: list[Any] = [value]
    while todo:
        item = todo.pop()
        count += 1
        if isinstance(item, _Map):
            for key, entry in item:
                todo += (key, entry)
        elif type(item) is tuple:  # an array; not an ExtType, which is a namedtuple
            todo += item
    return count


def check_shape_agrees(data: bytes) -> None:
    expected = objects_in(data)
    if expected == -1:
        return
    try:
        check_size(data, 2**32)
    except ShapeError as exc:
        if expected is not None:
            raise ShapeOracleError(f"check_size refuses a value of {expected} objects: {exc}") from exc
        return
    if expected is None:
        raise ShapeOracleError("check_size accepts what msgpack does not read as one value")
    check_size(data, expected)  # the exact budget is enough
    try:
        check_size(data, expected - 1)
    except ShapeError:
        return
    raise ShapeOracleError(f"check_size accepts {expected} objects within a budget of {expected - 1}")
