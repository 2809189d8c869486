"""The conformance vectors' table: each case's message bytes, the section of docs/protocol.md
it tests, what it shows, and the verdict a receiver must reach (a valid message, or the error
the reference decoder gives). make_vectors.py checks each verdict against the decoder and
writes the files and the manifest; this module only says what the cases are, so that adding a
case is a change here and nowhere else.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:  # framebus and tests.support.wire, wherever make_vectors.py runs from
    sys.path.insert(0, str(ROOT))

from framebus.common.fields import MAX_META_KEYS, MAX_META_VALUES, MAX_STATUS_TEXT  # noqa: E402
from framebus.common.protocol import (  # noqa: E402
    MAX_ATTEMPT,
    MAX_HEADER_BYTES,
    MAX_HEADER_OBJECTS,
    STATES,
    FrameHeader,
    Kind,
    encode_frame,
)
from tests.support.wire import (  # noqa: E402
    DROP,
    SMALL_JPEG,
    T0,
    U64,
    camera_entry,
    deep_meta_frame,
    frame_dict,
    nested,
    packed,
    raw,
    reply_dict,
    status_dict,
)

# The 8x8 grey JPEG of docs/protocol.md section 8 (libjpeg-turbo, quality 90, optimized).
SPEC_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb0043000302020302020303030304030304050805050404050a07"
    "0706080c0a0c0c0b0a0b0b0d0e12100d0e110e0b0b1016101113141515150c0f171816141812141514ffc0000b0800"
    "08000801011100ffc40014000100000000000000000000000000000000ffc40014100100000000000000000000000000"
    "000000ffda0008010100003f003fffd9"
)


@dataclass(frozen=True)
class Vector:
    name: str  # the file is NAME.bin
    message: bytes
    section: str  # of docs/protocol.md
    about: str  # what the case shows, in words
    match: str = ""  # invalid: a regular expression the reference decoder's error matches
    ignored: tuple[str, ...] = ()  # valid describe replies: optional fields a receiver ignores

    @property
    def valid(self) -> bool:
        return not self.match


def ok(name: str, message: bytes, section: str, about: str, ignored: tuple[str, ...] = ()) -> Vector:
    return Vector(name, message, section, about, ignored=ignored)


def bad(name: str, message: bytes, section: str, about: str, match: str) -> Vector:
    return Vector(name, message, section, about, match)


def frame(payload: bytes = SMALL_JPEG, **changes: Any) -> bytes:
    return raw(Kind.FRAME, frame_dict(**changes), payload)


def status(payload: bytes = b"", **changes: Any) -> bytes:
    return raw(Kind.STATUS, status_dict(**changes), payload)


def reply(cameras: object = (), **changes: Any) -> bytes:
    return raw(Kind.DESCRIBE_REPLY, reply_dict(list(cameras) if isinstance(cameras, tuple) else cameras, **changes))


def missing(prefix: str, build: Callable[..., bytes], names: tuple[str, ...], section: str) -> list[Vector]:
    """One vector per required field, left out of an otherwise valid message."""
    return [
        bad(
            f"{prefix}-no-{name.replace('_', '-')}",
            build(**{name: DROP}),
            section,
            "a required field is missing",
            rf"missing field '{name}'",
        )
        for name in names
    ]


def one_camera(**changes: Any) -> bytes:
    return reply([camera_entry(**changes)])


def at_budget(kind: Kind, fields: dict[str, Any], extra: int) -> dict[str, Any]:
    """`fields` and an unknown field `x`: a list of empty strings filling the kind's object
    budget exactly (extra=0), or one past it (extra=1)."""
    used = 1 + 2 * len(fields) + 2 + _objects(fields)  # the map, each key and value, "x" and its list
    return fields | {"x": [""] * (MAX_HEADER_OBJECTS[kind] - used + extra)}


def _objects(value: Any) -> int:
    """Objects inside the values of a map (containers' contents), beyond one per value."""
    count = 0
    todo = list(value.values())
    while todo:
        v = todo.pop()
        if isinstance(v, dict):
            count += 2 * len(v)
            todo += v.values()
        elif isinstance(v, list):
            count += len(v)
            todo += v
    return count


def header_of_exactly(size: int) -> bytes:
    """A valid FRAME whose header is `size` bytes: a str16 in meta padded to fit."""
    fields = frame_dict(meta={"pad": "p" * 300})
    short = len(packed(fields))
    fields["meta"]["pad"] = "p" * (300 + size - short)
    header = packed(fields)
    assert len(header) == size, len(header)
    return raw(Kind.FRAME, header, SMALL_JPEG)


def prefix_cases() -> list[Vector]:
    good = frame()
    header = packed(frame_dict())
    return [
        bad(
            "prefix-empty",
            b"",
            "2.1",
            "a message shorter than the prefix",
            r"0 bytes is shorter than the 8-byte prefix",
        ),
        bad("prefix-7-bytes", good[:7], "2.1", "a message shorter than the prefix", r"7 bytes is shorter"),
        bad("prefix-bad-magic", b"BF" + good[2:], "2.1", "magic is not 'FB'", r"bad magic b'BF'"),
        bad("prefix-lowercase-magic", b"fb" + good[2:], "2.1", "magic is case-sensitive", r"bad magic b'fb'"),
        bad("prefix-version-0", raw(Kind.FRAME, header, SMALL_JPEG, version=0), "2.1", "version is 1", r"version 0"),
        bad("prefix-version-2", raw(Kind.FRAME, header, SMALL_JPEG, version=2), "2.1", "version is 1", r"version 2"),
        bad("prefix-kind-0", raw(0, header, SMALL_JPEG), "2.1", "kinds are 1 to 5", r"unknown message kind 0"),
        bad("prefix-kind-6", raw(6, header, SMALL_JPEG), "2.1", "kinds are 1 to 5", r"unknown message kind 6"),
        bad("prefix-kind-255", raw(255, header, SMALL_JPEG), "2.1", "kinds are 1 to 5", r"unknown message kind 255"),
        bad(
            "prefix-header-length-65537",
            raw(Kind.FRAME, header, SMALL_JPEG, header_len=MAX_HEADER_BYTES + 1),
            "2.1",
            "H above 65536 is refused before anything past the prefix is read",
            r"declared header length 65537 exceeds 65536",
        ),
        bad(
            "prefix-header-length-u32-max",
            raw(Kind.FRAME, header, SMALL_JPEG, header_len=2**32 - 1),
            "2.1",
            "H is unsigned: 0xffffffff is 4294967295, not -1",
            r"declared header length 4294967295 exceeds 65536",
        ),
        bad(
            "prefix-header-length-big-endian",
            raw(Kind.FRAME, header, SMALL_JPEG, header_len=int.from_bytes(len(header).to_bytes(4, "little"), "big")),
            "2.1",
            "H is little-endian; read big-endian it is far past the end",
            r"exceeds 65536",
        ),
        bad(
            "prefix-header-past-end",
            raw(Kind.FRAME, header, b"", header_len=len(header) + 1),
            "2.1",
            "8 + H is more than the message length",
            r"runs past the message end",
        ),
        bad(
            "prefix-header-length-0",
            raw(Kind.DESCRIBE_REQUEST, b""),
            "2.1",
            "an empty header is not a msgpack value",
            r"not valid msgpack",
        ),
        bad(
            "prefix-lengths-before-kind",
            raw(9, header, SMALL_JPEG, header_len=MAX_HEADER_BYTES + 1),
            "4",
            "the prefix's lengths are checked before its kind (either error rejects the message)",
            r"exceeds 65536",
        ),
    ]


def msgpack_cases() -> list[Vector]:
    fields = frame_dict()
    header = packed(fields)
    deep_unknown = bytes([0x80 | (len(fields) + 1)]) + header[1:] + packed("x")
    return [
        bad("header-byte-c1", raw(Kind.FRAME, b"\xc1", SMALL_JPEG), "2.2", "0xc1 is never used", r"not valid msgpack"),
        bad(
            "header-truncated",
            raw(Kind.FRAME, header[:-3], SMALL_JPEG),
            "2.2",
            "H bytes cut a value short",
            r"not valid msgpack",
        ),
        bad(
            "header-trailing-bytes",
            raw(Kind.FRAME, header + b"\xc0", SMALL_JPEG),
            "2.2",
            "H bytes hold more than one value",
            r"not valid msgpack",
        ),
        bad(
            "header-an-array",
            raw(Kind.FRAME, [1, 2], SMALL_JPEG),
            "2.2",
            "the header is a map",
            r"must be a msgpack map, got list",
        ),
        bad(
            "header-nil",
            raw(Kind.DESCRIBE_REQUEST, b"\xc0"),
            "2.2",
            "the header is a map",
            r"must be a msgpack map, got NoneType",
        ),
        bad(
            "header-int-key",
            raw(Kind.FRAME, fields | {1: 2}, SMALL_JPEG),  # type: ignore[dict-item]
            "2.2",
            "map keys are str (or bin) at every level",
            r"not valid msgpack",
        ),
        bad(
            "header-int-key-in-meta",
            frame(meta={"k": {7: "v"}}),
            "2.2",
            "map keys are str (or bin) at every level, meta included",
            r"not valid msgpack",
        ),
        ok(
            "header-bin-key",
            raw(Kind.FRAME, fields | {b"seq": -1}, SMALL_JPEG),
            "2.2",
            "a bin key is accepted and matches no field",
        ),
        bad(
            "header-invalid-utf8",
            raw(Kind.FRAME, header.replace(b"\xa4cam1", b"\xa4ca\xffm"), SMALL_JPEG),
            "2.2",
            "str values are valid UTF-8",
            r"not valid msgpack",
        ),
        ok(
            "header-duplicate-key",
            raw(Kind.FRAME, bytes([header[0] + 1]) + header[1:] + packed("seq") + packed(8), SMALL_JPEG),
            "2.2",
            "senders send no duplicate keys; the reference decoder keeps the last (seq 8)",
        ),
        ok("header-unknown-fields", frame(future={"any": [1, "two", None]}), "2.2", "unknown fields are ignored"),
        ok(
            "header-1024-levels",
            raw(Kind.FRAME, deep_unknown + nested(1022, "list", b"\x90"), SMALL_JPEG),
            "2.2",
            "1024 levels: the header map, 1022 arrays and an empty one (an empty container is a level)",
        ),
        bad(
            "header-1025-levels",
            raw(Kind.FRAME, deep_unknown + nested(1023, "list", b"\x90"), SMALL_JPEG),
            "2.2",
            "1025 levels",
            r"nested deeper than 1024 levels",
        ),
        ok("header-65536-bytes", header_of_exactly(MAX_HEADER_BYTES), "2.2", "the largest header"),
        bad(
            "header-bad-timestamp-ext",
            frame(meta={"t": msgpack.ExtType(1, b"\x00\x00\x00")}).replace(b"\xc7\x03\x01", b"\xc7\x03\xff"),
            "2.2",
            "a timestamp extension (type -1) of 3 bytes",
            r"not valid msgpack",
        ),
        ok(
            "header-ext-in-meta",
            frame(meta={"t": msgpack.ExtType(5, b"xyz")}),
            "2.2",
            "extension types pass through in meta",
        ),
    ]


def budget_cases() -> list[Vector]:
    cases = []
    bases: list[tuple[Kind, dict[str, Any], bytes]] = [
        (Kind.FRAME, frame_dict(), SMALL_JPEG),
        (Kind.STATUS, status_dict(), b""),
        (Kind.DESCRIBE_REQUEST, {}, b""),
        (Kind.DESCRIBE_REPLY, reply_dict([]), b""),
        (Kind.PULL_REQUEST, {"after_seq": 1}, b""),
    ]
    for kind, fields, payload in bases:
        slug = kind.name.lower().replace("_", "-")
        budget = MAX_HEADER_OBJECTS[kind]
        cases.append(
            ok(f"budget-{slug}-at", raw(kind, at_budget(kind, fields, 0), payload), "2.2", f"{budget} objects")
        )
        cases.append(
            bad(
                f"budget-{slug}-over",
                raw(kind, at_budget(kind, fields, 1), payload),
                "2.2",
                f"{budget + 1} objects, refused before msgpack builds them",
                rf"more than {budget} values",
            )
        )
    cases.append(
        bad(
            "budget-declared-4g-entries",
            raw(Kind.FRAME, b"\xdf\xff\xff\xff\xff" + b"\xa1k" * 9000, SMALL_JPEG),
            "2.2",
            "a map declaring 2^32-1 entries is refused from its count, unread",
            r"more than 8448 values",
        )
    )
    return cases


def frame_cases() -> list[Vector]:
    spec = encode_frame(FrameHeader("cam1", 42, T0, T0 + 4_000_000, 8, 8), SPEC_JPEG)
    cases = [
        ok("frame-spec-example", spec, "8", "the worked example of section 8, byte for byte"),
        ok("frame-minimal", frame(), "3.1", "required fields only, the shortest JPEG (FF D8 FF D9)"),
        ok(
            "frame-extremes",
            frame(seq=U64, capture_ns=0, publish_ns=U64, width=16384, height=1),
            "3.1",
            "every number at an end of its range",
        ),
        ok("frame-seq-fixint-0", frame(seq=0), "3.1", "seq 0 as a positive fixint"),
        ok(
            "frame-times-as-float64",
            frame(capture_ns=float(T0), publish_ns=float(T0 + 4096)),
            "2.4",
            "ns times written as float64 holding whole numbers (JavaScript numbers): taken as integers",
        ),
        ok(
            "frame-ints-in-wide-encodings",
            raw(
                Kind.FRAME,
                packed(frame_dict(width=1, height=2)).replace(
                    b"\xa5width\x01", b"\xa5width\xd3" + (1).to_bytes(8, "big")
                ),
                SMALL_JPEG,
            ),
            "2.2",
            "an int in any encoding (here width 1 as int64): the value counts, not the width",
        ),
        ok(
            "frame-meta",
            frame(meta={"gain": 1.5, "tags": ["a", "b"], "raw": b"\x00\xff", "n": -3, "on": True, "none": None}),
            "3.1",
            "meta holds any msgpack values",
        ),
        ok("frame-meta-256-keys", frame(meta={f"k{i}": i for i in range(MAX_META_KEYS)}), "3.1", "meta's most keys"),
        ok("frame-meta-key-64", frame(meta={"k" * 64: 1}), "3.1", "a meta key of 64 characters"),
        ok(
            "frame-meta-16-levels",
            deep_meta_frame(16, "list", SMALL_JPEG),
            "3.1",
            "meta nested 16 levels, meta the first",
        ),
        ok(
            "frame-meta-16-levels-empty",
            frame(meta={"k": _empty_inside(14)}),
            "3.1",
            "meta nested 16 levels, the innermost an empty array",
        ),
        ok(
            "frame-meta-4096-values",
            frame(meta={"k": [0] * (MAX_META_VALUES - 1)}),
            "3.1",
            "meta's most values: 1 entry of meta, 4095 in its array",
        ),
        bad(
            "frame-meta-4097-values",
            frame(meta={"k": [0] * MAX_META_VALUES}),
            "3.1",
            "one value too many in meta",
            r"'meta' holds more than 4096 values",
        ),
        bad("frame-meta-257-keys", frame(meta={f"k{i}": i for i in range(257)}), "3.1", "too many keys", r"257 keys"),
        bad(
            "frame-meta-17-levels",
            deep_meta_frame(17, "map", SMALL_JPEG),
            "3.1",
            "meta nested 17 levels",
            r"deeper than 16",
        ),
        bad(
            "frame-meta-17-levels-empty",
            frame(meta={"k": _empty_inside(15)}),
            "3.1",
            "meta nested 17 levels, the innermost an empty array: it counts",
            r"deeper than 16",
        ),
        bad("frame-meta-key-empty", frame(meta={"": 1}), "3.1", "meta keys have 1-64 characters", r"'meta' key ''"),
        bad(
            "frame-meta-key-65",
            frame(meta={"k" * 65: 1}),
            "3.1",
            "meta keys have 1-64 characters",
            r"'meta' key 'k{65}'",
        ),
        bad(
            "frame-meta-key-control", frame(meta={"a\x1bb": 1}), "3.1", "meta keys are printable", r"must be printable"
        ),
        bad("frame-meta-key-bin", frame(meta={b"k": 1}), "3.1", "meta keys are text", r"'meta' key b'k'"),
        bad("frame-meta-array", frame(meta=[1]), "3.1", "meta is a map", r"'meta' must be a map, got list"),
        bad(
            "frame-meta-nil",
            frame(meta=None),
            "2.2",
            "nil is never a field value",
            r"'meta' must be a map, got NoneType",
        ),
        bad("frame-payload-empty", frame(b""), "3.1", "the payload is a JPEG", r"payload of 0 bytes is not a JPEG"),
        bad(
            "frame-payload-3-bytes",
            frame(b"\xff\xd8\xd9"),
            "3.1",
            "a JPEG has at least 4 bytes",
            r"3 bytes is not a JPEG",
        ),
        bad("frame-payload-no-soi", frame(b"\x89PNG\xff\xd9"), "3.1", "a JPEG starts FF D8", r"no SOI"),
        bad("frame-payload-no-eoi", frame(SPEC_JPEG[:-1]), "3.1", "a JPEG ends FF D9", r"no EOI"),
        bad("frame-encoding-png", frame(encoding="png"), "3.1", "encoding is jpeg", r"unsupported encoding 'png'"),
        bad("frame-encoding-17", frame(encoding="j" * 17), "3.1", "encoding has at most 16", r"longer than 16"),
        bad("frame-seq-negative", frame(seq=-1), "3.1", "seq is 0 to 2^64-1", r"'seq'=-1 is outside"),
        bad(
            "frame-seq-float",
            frame(seq=7.0),
            "2.4",
            "seq is an int, even as a whole float",
            r"'seq' must be int, got float",
        ),
        bad("frame-seq-bool", frame(seq=True), "2.2", "a boolean is not an int", r"'seq' must be int, got bool"),
        bad("frame-seq-string", frame(seq="7"), "2.2", "a str is not an int", r"'seq' must be int, got str"),
        bad(
            "frame-capture-negative",
            frame(capture_ns=-1),
            "3.1",
            "times are 0 to 2^64-1",
            r"'capture_ns'=-1 is outside",
        ),
        bad(
            "frame-capture-fraction", frame(capture_ns=1.5), "2.4", "a float time must be whole", r"not a whole number"
        ),
        bad("frame-capture-nan", frame(capture_ns=float("nan")), "2.4", "NaN is no time", r"not a whole number"),
        bad("frame-publish-float-2-64", frame(publish_ns=2.0**64), "2.4", "a float time within range", r"outside"),
        bad("frame-width-0", frame(width=0), "3.1", "width is 1 to 16384", r"'width'=0 is outside \[1, 16384\]"),
        bad("frame-width-16385", frame(width=16385), "3.1", "width is 1 to 16384", r"'width'=16385 is outside"),
        bad("frame-height-0", frame(height=0), "3.1", "height is 1 to 16384", r"'height'=0 is outside"),
        bad("frame-height-16385", frame(height=16385), "3.1", "height is 1 to 16384", r"'height'=16385 is outside"),
    ]
    cases += missing(
        "frame", frame, ("camera", "seq", "capture_ns", "publish_ns", "width", "height", "encoding"), "3.1"
    )
    return cases + camera_id_cases()


def _empty_inside(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


def camera_id_cases() -> list[Vector]:
    good = ["a", "site-1/door.left", "A_b.c-9", "/".join(["p" * 64] * 4), "..a", "a.."]
    wrong = {
        "empty": "",
        "part-65": "x" * 65,
        "5-parts": "a/b/c/d/e",
        "space": "cam 1",
        "newline": "cam\n1",
        "leading-slash": "/etc",
        "trailing-slash": "cam/",
        "double-slash": "a//b",
        "dot": ".",
        "dotdot": "..",
        "dotdot-part": "a/../b",
        "escape": "../../etc",
        "non-ascii": "kamera\u00e9",
        "fullwidth": "\uff52\uff45\uff41\uff4c",
    }
    cases = [ok(f"camera-id-ok-{i}", frame(camera=c), "2.3", f"camera id {c!r}") for i, c in enumerate(good)]
    cases += [
        bad(
            f"camera-id-{slug}",
            frame(camera=c),
            "2.3",
            f"camera id {c!r}",
            r"camera id .* (is invalid|may not contain)",
        )
        for slug, c in wrong.items()
    ]
    cases.append(
        bad("camera-id-bin", frame(camera=b"cam1"), "2.2", "a bin is not a str", r"'camera' must be str, got bytes")
    )
    return cases


def status_cases() -> list[Vector]:
    with_frame = status_dict(frame=frame_dict())
    cases = [ok(f"status-state-{s}", status(state=s), "3.2", f"state {s}") for s in STATES]
    cases += [
        ok(
            "status-with-frame",
            raw(Kind.STATUS, with_frame, SPEC_JPEG),
            "3.2",
            "the last frame attached, its JPEG the payload",
        ),
        ok(
            "status-extremes",
            status(last_seq=-1, attempt=MAX_ATTEMPT, retry_in_s=86400, reason="r" * MAX_STATUS_TEXT, publish_ns=U64),
            "3.2",
            "every field at an end of its range; retry_in_s as an int",
        ),
        ok(
            "status-zeroes",
            status(last_seq=U64, attempt=0, retry_in_s=0.0, reason="", publish_ns=0),
            "3.2",
            "the other ends",
        ),
        ok(
            "status-retry-float32",
            raw(
                Kind.STATUS,
                packed(status_dict(retry_in_s=0.5)).replace(b"\xcb\x3f\xe0" + bytes(6), b"\xca\x3f\x00\x00\x00"),
                b"",
            ),
            "2.2",
            "a float field as float32",
        ),
        bad(
            "status-state-unknown", status(state="paused"), "3.2", "states are a closed set", r"unknown state 'paused'"
        ),
        bad(
            "status-state-case", status(state="STREAMING"), "3.2", "states are lower case", r"unknown state 'STREAMING'"
        ),
        bad("status-state-33", status(state="s" * 33), "3.2", "state has at most 32", r"longer than 32"),
        bad(
            "status-attempt-2-31",
            status(attempt=2**31),
            "3.2",
            "attempt is 0 to 2^31-1",
            r"'attempt'=2147483648 is outside",
        ),
        bad("status-attempt-negative", status(attempt=-1), "3.2", "attempt is 0 to 2^31-1", r"'attempt'=-1 is outside"),
        bad("status-last-seq-2", status(last_seq=-2), "3.2", "last_seq is -1 to 2^64-1", r"'last_seq'=-2 is outside"),
        bad(
            "status-retry-nan",
            status(retry_in_s=float("nan")),
            "3.2",
            "NaN is no delay",
            r"'retry_in_s'=nan is outside",
        ),
        bad(
            "status-retry-over",
            status(retry_in_s=86400.5),
            "3.2",
            "retry_in_s is at most 86400",
            r"is outside \[0, 86400\]",
        ),
        bad(
            "status-retry-negative",
            status(retry_in_s=-0.5),
            "3.2",
            "retry_in_s is at least 0",
            r"is outside \[0, 86400\]",
        ),
        bad(
            "status-reason-513",
            status(reason="r" * 513),
            "3.2",
            "reason has at most 512",
            r"'reason' is longer than 512",
        ),
        bad(
            "status-reason-control",
            status(reason="a\x1b[2Jb"),
            "2.3",
            "text is printable",
            r"'reason' contains non-printable",
        ),
        bad("status-reason-tab", status(reason="a\tb"), "2.3", "a tab is not printable", r"non-printable"),
        bad(
            "status-payload-no-frame",
            status(SMALL_JPEG),
            "3.2",
            "no frame: no payload",
            r"status without a frame must have no payload",
        ),
        bad(
            "status-frame-no-payload",
            raw(Kind.STATUS, with_frame),
            "3.2",
            "a frame: its JPEG",
            r"payload of 0 bytes is not a JPEG",
        ),
        bad(
            "status-frame-not-a-map",
            status(SMALL_JPEG, frame=[]),
            "3.2",
            "frame is a map",
            r"field 'frame' must be a map",
        ),
        bad(
            "status-frame-bad",
            status(SMALL_JPEG, frame=frame_dict(width=0)),
            "3.2",
            "frame follows 3.1",
            r"'width'=0 is outside",
        ),
        bad(
            "status-frame-other-camera",
            status(SMALL_JPEG, frame=frame_dict(camera="other")),
            "3.2",
            "the frame is of the status's camera",
            r"attached frame is of camera 'other', not 'cam1'",
        ),
        bad(
            "status-frame-nil",
            status(SMALL_JPEG, frame=None),
            "2.2",
            "nil is never a field value",
            r"'frame' must be a map",
        ),
    ]
    names = ("camera", "state", "publish_ns", "last_seq", "reason", "attempt", "retry_in_s")
    cases += missing("status", status, names, "3.2")
    return cases


def pool_cases() -> list[Vector]:
    def pull(fields: dict[str, Any], payload: bytes = b"") -> bytes:
        return raw(Kind.PULL_REQUEST, {"after_seq": 41, **fields}, payload)

    result = {"seq": 41, "meta": {"results": {"faces": 2}}}
    return [
        ok("pull-request-pool", pull({"pool": "faces"}), "3.6", "a member of pool faces asks"),
        ok("pull-request-pool-64", pull({"pool": "p" * 64}), "3.6", "a pool name of 64 characters"),
        ok("pull-request-pool-result", pull({"pool": "faces", "result": result}), "3.6", "a result with meta"),
        ok(
            "pull-request-pool-result-jpeg",
            pull({"pool": "faces", "result": {**result, "width": 8, "height": 8}}, SMALL_JPEG),
            "3.6",
            "a result with an output picture: width, height and the JPEG as payload",
        ),
        ok("pull-request-pool-result-bare", pull({"pool": "faces", "result": {"seq": 0}}), "3.6", "seq alone"),
        ok(
            "pull-request-pool-member",
            pull({"pool": "faces", "member": "9f86d081884c7d659a2feaa0c55ad015"}),
            "3.6",
            "a member's token: one credit across the node's cameras",
        ),
        ok(
            "pull-request-pool-member-result",
            pull({"pool": "faces", "member": "m-1", "result": result}),
            "3.6",
            "a member's token with its result",
        ),
        ok("pull-request-pool-member-64", pull({"pool": "faces", "member": "t" * 64}), "3.6", "a 64-character token"),
        bad(
            "pull-request-member-no-pool",
            pull({"member": "m-1"}),
            "3.6",
            "a token needs a pool",
            r"a 'member' needs a 'pool'",
        ),
        bad(
            "pull-request-member-65",
            pull({"pool": "faces", "member": "t" * 65}),
            "3.6",
            "at most 64 characters",
            r"member token .* invalid",
        ),
        bad(
            "pull-request-member-empty",
            pull({"pool": "faces", "member": ""}),
            "3.6",
            "not empty",
            r"member token '' is invalid",
        ),
        bad(
            "pull-request-member-space",
            pull({"pool": "faces", "member": "m 1"}),
            "3.6",
            "[A-Za-z0-9_.-] only",
            r"member token 'm 1' is invalid",
        ),
        bad(
            "pull-request-member-bin",
            pull({"pool": "faces", "member": b"m-1"}),
            "3.6",
            "a str",
            r"field 'member' must be str",
        ),
        bad("pull-request-pool-65", pull({"pool": "p" * 65}), "3.6", "at most 64 characters", r"pool name .* invalid"),
        bad("pull-request-pool-slash", pull({"pool": "a/b"}), "3.6", "one camera id part", r"pool name .* invalid"),
        bad("pull-request-pool-dotdot", pull({"pool": ".."}), "3.6", "not '..'", r"pool name '..' is invalid"),
        bad("pull-request-pool-empty", pull({"pool": ""}), "3.6", "not empty", r"pool name '' is invalid"),
        bad("pull-request-pool-bin", pull({"pool": b"faces"}), "3.6", "a str", r"field 'pool' must be str"),
        bad(
            "pull-request-result-no-pool",
            pull({"result": result}),
            "3.6",
            "a result needs a pool",
            r"a 'result' needs a 'pool'",
        ),
        bad(
            "pull-request-result-not-map",
            pull({"pool": "faces", "result": 41}),
            "3.6",
            "result is a map",
            r"field 'result' must be dict",
        ),
        bad(
            "pull-request-result-no-seq",
            pull({"pool": "faces", "result": {"meta": {}}}),
            "3.6",
            "result.seq is required",
            r"missing field 'seq'",
        ),
        bad(
            "pull-request-result-width-only",
            pull({"pool": "faces", "result": {"seq": 1, "width": 8}}, SMALL_JPEG),
            "3.6",
            "width and height come together",
            r"missing field 'height'",
        ),
        bad(
            "pull-request-result-size-no-jpeg",
            pull({"pool": "faces", "result": {"seq": 1, "width": 8, "height": 8}}),
            "3.6",
            "a size announces a JPEG payload",
            r"not a JPEG",
        ),
        bad(
            "pull-request-result-jpeg-no-size",
            pull({"pool": "faces", "result": {"seq": 1}}, SMALL_JPEG),
            "3.6",
            "a JPEG comes with its size",
            r"must have no payload",
        ),
        bad(
            "pull-request-result-meta-key",
            pull({"pool": "faces", "result": {"seq": 1, "meta": {"": 1}}}),
            "3.6",
            "meta follows the FRAME rules",
            r"'meta' key",
        ),
    ]


def request_cases() -> list[Vector]:
    return [
        ok("describe-request", raw(Kind.DESCRIBE_REQUEST, {}), "3.3", "the 9 bytes a node expects"),
        ok("describe-request-fields", raw(Kind.DESCRIBE_REQUEST, {"x": 1}), "3.3", "any map is a request"),
        bad(
            "describe-request-payload",
            raw(Kind.DESCRIBE_REQUEST, {}, b"x"),
            "3.3",
            "no payload",
            r"must have no payload",
        ),
        ok("pull-request", raw(Kind.PULL_REQUEST, {"after_seq": 41}), "3.5", "the newest frame after 41"),
        ok("pull-request-none-yet", raw(Kind.PULL_REQUEST, {"after_seq": -1}), "3.5", "after_seq -1: none yet"),
        ok("pull-request-u64", raw(Kind.PULL_REQUEST, {"after_seq": U64}), "3.5", "after_seq 2^64-1"),
        bad(
            "pull-request-2",
            raw(Kind.PULL_REQUEST, {"after_seq": -2}),
            "3.5",
            "after_seq is -1 or more",
            r"'after_seq'=-2 is outside",
        ),
        bad(
            "pull-request-float",
            raw(Kind.PULL_REQUEST, {"after_seq": 1.0}),
            "3.5",
            "after_seq is an int",
            r"must be int, got float",
        ),
        bad(
            "pull-request-empty",
            raw(Kind.PULL_REQUEST, {}),
            "3.5",
            "after_seq is required",
            r"missing field 'after_seq'",
        ),
        bad(
            "pull-request-payload",
            raw(Kind.PULL_REQUEST, {"after_seq": 1}, b"x"),
            "3.5",
            "no payload",
            r"must have no payload",
        ),
    ]


def reply_cases() -> list[Vector]:
    full = camera_entry(
        "door/left",
        "tcp://0.0.0.0:5556",
        "every-frame",
        state="source-error",
        reason="cannot open rtsp://admin:***@cam/x: 401 Unauthorized",
        pull_endpoint="tcp://0.0.0.0:6556",
        published_fps=29.5,
        reconnects=3,
    )
    cases = [
        ok("describe-reply-no-cameras", reply(), "3.4", "a node without cameras"),
        ok("describe-reply-one-camera", one_camera(), "3.4", "required fields only"),
        ok("describe-reply-every-field", reply([full]), "3.4", "every optional field too"),
        ok("describe-reply-int-fps", one_camera(fps=25, published_fps=0), "3.4", "float fields as ints"),
        ok(
            "describe-reply-extremes",
            reply(
                [
                    camera_entry(
                        endpoint="tcp://" + "h" * 250, width=16384, height=16384, fps=1000, published_fps=1000.0
                    )
                ],
                node="n" * 128,
                time_ns=U64,
            ),
            "3.4",
            "the upper ends: a 256-character endpoint, a 128-character node name, size 16384, 1000 fps",
        ),
        ok(
            "describe-reply-unknown-size",
            one_camera(width=0, height=0, fps=0.0, state="connecting"),
            "3.4",
            "size 0: unknown",
        ),
        ok("describe-reply-time-float64", reply(time_ns=float(T0)), "2.4", "time_ns as a whole float64"),
        ok(
            "describe-reply-pull-empty",
            one_camera(pull_endpoint=""),
            "3.4",
            "pull_endpoint '': no pull mode, like absent",
        ),
        ok(
            "describe-reply-ipc-inproc",
            reply([camera_entry("a", "ipc:///tmp/n-a"), camera_entry("b", "inproc://b")]),
            "3.4",
            "endpoint schemes",
        ),
    ]
    for slug, name, value, about in [
        ("reason-control", "reason", "a\x00b", "a reason that is not printable"),
        ("reason-513", "reason", "r" * 513, "a reason of 513 characters"),
        ("pull-endpoint-http", "pull_endpoint", "http://x", "a pull_endpoint that is no ZeroMQ address"),
        ("pull-endpoint-int", "pull_endpoint", 0, "a pull_endpoint that is not a str"),
        ("published-fps-over", "published_fps", 1000.5, "published_fps above 1000"),
        ("published-fps-nan", "published_fps", float("nan"), "published_fps NaN"),
        ("reconnects-negative", "reconnects", -1, "reconnects below 0"),
        ("reconnects-str", "reconnects", "3", "reconnects as a str"),
    ]:
        cases.append(
            ok(
                f"describe-reply-ignored-{slug}",
                reply([camera_entry(**{name: value}), camera_entry("cam2", "tcp://127.0.0.1:5557")]),
                "4.1",
                f"{about}: ignored as if absent, the camera and its node kept",
                ignored=(f"cameras[0].{name}",),
            )
        )
    cases += [
        bad("describe-reply-payload", reply() + b"x", "3.4", "no payload", r"describe reply must have no payload"),
        bad(
            "describe-reply-no-cameras-field",
            reply(cameras=DROP),
            "3.4",
            "cameras is required",
            r"missing field 'cameras'",
        ),
        bad(
            "describe-reply-cameras-map",
            reply({"a": camera_entry()}),
            "3.4",
            "cameras is an array",
            r"'cameras' must be list",
        ),
        bad(
            "describe-reply-1025-cameras",
            reply([0] * 1025),
            "3.4",
            "at most 1024 cameras",
            r"1025 cameras is more than 1024",
        ),
        bad(
            "describe-reply-camera-not-map", reply(["cam1"]), "3.4", "a camera is a map", r"cameras\[0\] must be a map"
        ),
        bad(
            "describe-reply-node-129",
            reply(node="n" * 129),
            "3.4",
            "node has at most 128",
            r"'node' is longer than 128",
        ),
        bad(
            "describe-reply-node-control",
            reply(node="n\x07"),
            "2.3",
            "node is printable",
            r"'node' contains non-printable",
        ),
        bad(
            "describe-reply-time-negative",
            reply(time_ns=-1),
            "3.4",
            "time_ns is 0 to 2^64-1",
            r"'time_ns'=-1 is outside",
        ),
        bad(
            "describe-reply-state",
            one_camera(state="paused"),
            "3.4",
            "a camera's state is one of the states",
            r"unknown state",
        ),
        bad(
            "describe-reply-delivery",
            one_camera(delivery="every_frame"),
            "3.4",
            "delivery is latest or every-frame",
            r"unknown delivery",
        ),
        bad("describe-reply-fps-over", one_camera(fps=1000.5), "3.4", "fps is 0 to 1000", r"'fps'=1000.5 is outside"),
        bad("describe-reply-fps-nan", one_camera(fps=float("nan")), "3.4", "fps is 0 to 1000", r"'fps'=nan is outside"),
        bad(
            "describe-reply-endpoint-http",
            one_camera(endpoint="http://x:1"),
            "3.4",
            "endpoint scheme",
            r"is not a tcp://",
        ),
        bad(
            "describe-reply-endpoint-257",
            one_camera(endpoint="tcp://" + "h" * 251),
            "3.4",
            "endpoint has at most 256",
            r"longer than 256",
        ),
        bad(
            "describe-reply-width-16385",
            one_camera(width=16385),
            "3.4",
            "width is 0 to 16384",
            r"'width'=16385 is outside",
        ),
        bad("describe-reply-camera-id", one_camera(camera="../x"), "2.3", "camera id", r"may not contain"),
        bad(
            "describe-reply-second-camera-bad",
            reply([camera_entry(), camera_entry("c2", width=-1)]),
            "4.1",
            "a required field of any camera makes the whole reply malformed",
            r"cameras\[1\]: field 'width'=-1",
        ),
    ]
    names = ("camera", "endpoint", "width", "height", "fps", "state", "delivery")
    cases += missing("describe-reply", one_camera, names, "3.4")
    cases += missing("describe-reply", reply, ("node", "time_ns"), "3.4")
    return cases


def vectors() -> list[Vector]:
    every = (
        prefix_cases()
        + msgpack_cases()
        + budget_cases()
        + frame_cases()
        + status_cases()
        + request_cases()
        + pool_cases()
        + reply_cases()
    )
    names = [v.name for v in every]
    assert len(names) == len(set(names)), "vector names repeat"
    return every
