"""Wire messages built by hand, for every test that needs bytes the encoder would never write: a
wrong prefix, a wrong field, a header nested past msgpack's packer. One home for the message
shapes of docs/protocol.md, shared by the protocol tests (tests/test_protocol.py), the hostile
peers (tests/support/rogue_corpus.py), the fuzzer's seeds and the conformance vectors
(docs/protocol-vectors/vector_cases.py).

Every builder returns plain dicts or bytes with fixed, valid defaults; a test changes the one
field it is about (`frame_dict(seq=-1)`) or leaves it out (`frame_dict(seq=DROP)`).
"""

from __future__ import annotations

from typing import Any

import msgpack

from framebus.common.protocol import MAGIC, PREFIX, VERSION, Kind

U64 = 2**64 - 1
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z in ns: above 2**53, as every real time is
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) + b"\xff\xd9"  # passes the decoder's check; no picture
SMALL_JPEG = b"\xff\xd8\xff\xd9"  # the shortest payload the decoder takes for a JPEG
DROP: Any = object()  # a field given this value is left out of the header


def packed(value: object, *, raw_strings: bool = False) -> bytes:
    """msgpack bytes as framebus writes them (str as str, bytes as bin). raw_strings: lone
    surrogates go out as the invalid UTF-8 they make, instead of being refused."""
    errors = "surrogatepass" if raw_strings else None
    return msgpack.packb(value, use_bin_type=True, unicode_errors=errors)  # type: ignore[no-any-return]


def raw(
    kind: int,
    header: object,
    payload: bytes = b"",
    *,
    magic: bytes = MAGIC,
    version: int = VERSION,
    header_len: int | None = None,
) -> bytes:
    """prefix | header | payload, every part of the prefix open to be wrong. `header` is msgpack
    bytes as they are, or a value to pack."""
    data = header if isinstance(header, bytes) else packed(header)
    length = len(data) if header_len is None else header_len
    return PREFIX.pack(magic, version, kind, length) + data + payload


def _without_dropped(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not DROP}


def frame_dict(camera: str = "cam1", seq: int = 7, **changes: Any) -> dict[str, Any]:
    """A valid FRAME header (docs/protocol.md 3.1), changed as asked."""
    d: dict[str, Any] = {
        "camera": camera,
        "seq": seq,
        "capture_ns": T0,
        "publish_ns": T0 + 5_000_000,
        "width": 640,
        "height": 480,
        "encoding": "jpeg",
    }
    return _without_dropped(d | changes)


def status_dict(camera: str = "cam1", **changes: Any) -> dict[str, Any]:
    """A valid STATUS header without a frame (3.2), changed as asked."""
    d: dict[str, Any] = {
        "camera": camera,
        "state": "reconnecting",
        "publish_ns": T0 + 1_000_000_000,
        "last_seq": 7,
        "reason": "stream stopped delivering frames",
        "attempt": 1,
        "retry_in_s": 0.5,
    }
    return _without_dropped(d | changes)


def camera_entry(
    camera: str = "cam1", endpoint: str = "tcp://127.0.0.1:5556", delivery: str = "latest", **changes: Any
) -> dict[str, Any]:
    """A valid entry of a DESCRIBE_REPLY's `cameras` (3.4), required fields only."""
    d: dict[str, Any] = {
        "camera": camera,
        "endpoint": endpoint,
        "width": 1280,
        "height": 720,
        "fps": 30.0,
        "state": "streaming",
        "delivery": delivery,
    }
    return _without_dropped(d | changes)


def reply_dict(cameras: object, **changes: Any) -> dict[str, Any]:
    """A DESCRIBE_REPLY header around `cameras` (any value: a list of entries, or not)."""
    return _without_dropped({"node": "node-a", "time_ns": T0, "cameras": cameras} | changes)


def reply(cameras: object, **changes: Any) -> bytes:
    """A whole DESCRIBE_REPLY message."""
    return raw(Kind.DESCRIBE_REPLY, reply_dict(cameras, **changes))


def nested(levels: int, container: str, innermost: bytes = b"\xc0") -> bytes:
    """msgpack bytes of `levels` lists (or one-key maps) one inside the other around `innermost`
    (nil), written flat: msgpack's packer refuses to nest past 511 levels, its unpacker reads 1024."""
    one = b"\x91" if container == "list" else b"\x81\xa1k"
    return one * levels + innermost


def frame_with_meta_bytes(meta: bytes, jpeg: bytes = JPEG, **changes: Any) -> bytes:
    """A FRAME whose header's 'meta' field is the given msgpack bytes, however deep."""
    fields = frame_dict(**changes)
    header = bytes([0x80 | (len(fields) + 1)]) + packed(fields)[1:]
    return raw(Kind.FRAME, header + packed("meta") + meta, jpeg)


def deep_meta_frame(levels: int, container: str, jpeg: bytes = JPEG, **changes: Any) -> bytes:
    """A FRAME whose 'meta' nests `levels` levels, 'meta' itself the first: 1023 is the most
    msgpack reads, the header map being one more level."""
    return frame_with_meta_bytes(b"\x81\xa4deep" + nested(levels - 1, container), jpeg, **changes)
