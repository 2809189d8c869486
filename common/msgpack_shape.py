"""How many objects a msgpack value holds, counted from its bytes before msgpack builds any.
A header comes from any peer, and msgpack builds as many objects as 64 KiB can declare (65,000
empty lists cost it ~10 ms and the garbage collector more); counting first bounds the work per
message by a budget, not by the bytes. The count is a loop with an explicit stack: no recursion,
so no nesting (msgpack allows 1024 levels) can exhaust Python's.
"""

from __future__ import annotations

from typing import NamedTuple

MAX_DEPTH = 1024  # msgpack's own limit (its unpacker's stack): deeper is refused either way


class ShapeError(ValueError):
    """The bytes are not one msgpack value within the limits; the message says which limit."""


class _Layout(NamedTuple):
    """What one msgpack type byte announces (https://github.com/msgpack/msgpack/blob/master/spec.md)."""

    size: int  # bytes of the type byte and fixed fields; for a container, of its header
    length_bytes: int  # a big-endian length (str, bin, ext) or count (array, map) follows the type byte
    per_entry: int  # 0: not a container; 1: array (one object per entry); 2: map (key and value)
    fixed_count: int  # entries of a fixarray or fixmap, read from the type byte itself


def _layouts() -> tuple[_Layout | None, ...]:
    table: list[_Layout | None] = [None] * 256  # None: 0xc1, never used
    for b in range(256):
        if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):  # fixints, nil, false, true
            table[b] = _Layout(1, 0, 0, 0)
        elif b <= 0x8F:
            table[b] = _Layout(1, 0, 2, b & 0x0F)  # fixmap
        elif b <= 0x9F:
            table[b] = _Layout(1, 0, 1, b & 0x0F)  # fixarray
        elif b <= 0xBF:
            table[b] = _Layout(1 + (b & 0x1F), 0, 0, 0)  # fixstr
    for b, length_bytes in ((0xC4, 1), (0xC5, 2), (0xC6, 4), (0xD9, 1), (0xDA, 2), (0xDB, 4)):
        table[b] = _Layout(1 + length_bytes, length_bytes, 0, 0)  # bin8-32, str8-32
    for b, length_bytes in ((0xC7, 1), (0xC8, 2), (0xC9, 4)):
        table[b] = _Layout(2 + length_bytes, length_bytes, 0, 0)  # ext8-32: length, then a type byte
    for b, size in ((0xCA, 5), (0xCB, 9), (0xCC, 2), (0xCD, 3), (0xCE, 5), (0xCF, 9)):
        table[b] = _Layout(size, 0, 0, 0)  # float32/64, uint8-64
    for b, size in ((0xD0, 2), (0xD1, 3), (0xD2, 5), (0xD3, 9)):
        table[b] = _Layout(size, 0, 0, 0)  # int8-64
    for b, data in ((0xD4, 1), (0xD5, 2), (0xD6, 4), (0xD7, 8), (0xD8, 16)):
        table[b] = _Layout(2 + data, 0, 0, 0)  # fixext: type byte, then data
    for b, length_bytes, per_entry in ((0xDC, 2, 1), (0xDD, 4, 1), (0xDE, 2, 2), (0xDF, 4, 2)):
        table[b] = _Layout(1 + length_bytes, length_bytes, per_entry, 0)  # array16/32, map16/32
    return tuple(table)


_LAYOUTS = _layouts()


def check_size(raw: bytes, max_objects: int) -> None:
    """Raise ShapeError unless `raw` is exactly one msgpack value of at most `max_objects`
    objects (every value counts, map keys included) nested at most MAX_DEPTH containers deep,
    as msgpack reads it. Work is O(min(max_objects, len(raw))):
    strings are skipped, not read, and a container's declared count is checked before its first
    entry. Every object takes at least one byte, so callers need not scan bytes shorter than the
    budget."""
    end = len(raw)
    pos = 0
    left = max_objects
    remaining = 1  # objects still to read in the innermost open container; at first, the value itself
    outer: list[int] = []  # the same for each enclosing container
    try:
        while True:
            if not remaining:
                if not outer:
                    break
                remaining = outer.pop()
                continue
            remaining -= 1
            left -= 1
            if left < 0:
                raise ShapeError(f"more than {max_objects} values")
            layout = _LAYOUTS[raw[pos]]
            if layout is None:
                raise ShapeError(f"byte 0xc1 at {pos} is not a msgpack type")
            size, length_bytes, per_entry, count = layout
            if length_bytes:
                count = int.from_bytes(raw[pos + 1 : pos + 1 + length_bytes], "big")
            if per_entry:
                entries = count * per_entry
                if entries > left:  # refused before any of it is read
                    raise ShapeError(f"a container of {count} entries at byte {pos}: more than {max_objects} values")
                if len(outer) == MAX_DEPTH:  # every open container is in `outer`, and the bottom entry
                    raise ShapeError(f"nested deeper than {MAX_DEPTH} levels")
                outer.append(remaining)
                remaining = entries
                pos += size
            else:
                pos += size + count  # count is a str/bin/ext length here (0 for fixed-size types)
    except IndexError:
        raise ShapeError(f"truncated: a value is missing at byte {pos} of {end}") from None
    if pos > end:
        raise ShapeError(f"truncated: the last value needs {pos} bytes, there are {end}")
    if pos < end:
        raise ShapeError(f"{end - pos} extra bytes after the value")
