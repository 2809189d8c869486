"""decode() as it was before issue 11 in one respect: it measures the header's nesting with the
recursive walk common/fields.py used then. Only for checking that the fuzzer finds that bug
(tests/test_fuzz_decode.py); never used by framebus."""

from __future__ import annotations

import msgpack

from framebus.common import protocol


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def decode(message: bytes | memoryview) -> protocol.Message:
    view = memoryview(message)
    if len(view) >= protocol.PREFIX.size:
        _, _, _, header_len = protocol.PREFIX.unpack_from(view)
        try:
            header = msgpack.unpackb(view[protocol.PREFIX.size : protocol.PREFIX.size + header_len])
        except Exception:  # noqa: BLE001 - garbage is decode()'s to refuse, below
            header = None
        _depth(header)  # RecursionError from ~500 levels, as `meta` did
    return protocol.decode(message)
