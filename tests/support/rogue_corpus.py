"""The hostile peer's messages (its corpus), apart from the sockets that send them
(tests/support/rogue_publisher.py, the harness): malformed and hostile FRAME, STATUS and DESCRIBE_REPLY
messages for one camera's stream, reproducible from a seed, and what a worker should make of
each. The shapes come from tests/support/wire.py; here they get live times, as a node's would (a frame
repeated with the same `seq` and `publish_ns` is a duplicate a worker drops).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import msgpack

from framebus.common.protocol import MAGIC, PREFIX, VERSION, Frame, Kind, ProtocolError, Status, decode
from tests.support.wire import DROP, JPEG, U64, camera_entry, frame_dict, packed, raw, status_dict
from tests.support.wire import reply as _reply

# The rogue node's cameras (tests/support/rogue_publisher.py says what each one is for).
FLOOD = "rogue-flood"
LONG_ID = "/".join(c * 64 for c in "LONG")  # 259 characters: the longest valid camera id
BIG_IDS = tuple(f"rogue-big{i}" for i in range(5))
ONE_MIB = 1024 * 1024
NEAR_MAX = 31 * ONE_MIB  # below the worker's 32 MiB ZMQ_MAXMSGSIZE: received, then rejected by the decoder

# Camera ids that must never become a path outside the save directory, nor any id at all.
HOSTILE_IDS = (
    "../../etc",
    "/abs",
    "a\x00b",
    "cam/../../x",
    "../../framebus-escape",
    "/tmp/framebus-escape-abs",
    "cam/../../framebus-escape2",
    "x" * 5000,
    "ｒｅａｌ",  # fullwidth
    "re\u0430l",  # Cyrillic a
    "real\u202e",  # right-to-left override
    "cam\n",
    "cam ",
    "C:\\x",
    "",
    ".",
    "..",
    "cam/",
    "/",
    "a/b/c/d/e",
    FLOOD + "/..",
    "\udcff",  # a lone surrogate: invalid UTF-8 on the wire
)
WRONG_VALUES: tuple[object, ...] = (
    "1",
    "",
    1.5,
    -1,
    -(2**63),
    U64,
    None,
    True,
    [],
    [1, 2],
    {},
    {"a": {"b": {"c": []}}},
    b"\x00\xff",
    float("nan"),
    float("inf"),
    -0.0,
    "x" * 1000,
    msgpack.ExtType(42, b"ext"),
)
FRAME_FIELDS = ("camera", "seq", "capture_ns", "publish_ns", "width", "height", "encoding", "meta")


def live_frame(camera: str, seq: int, **changes: Any) -> dict[str, Any]:
    """A valid FRAME header sent now, 16x16."""
    now = time.time_ns()
    return frame_dict(camera, seq, **({"capture_ns": now, "publish_ns": now, "width": 16, "height": 16} | changes))


def live_status(camera: str, **changes: Any) -> dict[str, Any]:
    """A valid STATUS header sent now (reconnecting, attempt 1), without a frame."""
    return status_dict(camera, **({"publish_ns": time.time_ns(), "last_seq": 1, "reason": ""} | changes))


def reply(cameras: object, **changes: object) -> bytes:
    return _reply(cameras, **({"node": "rogue-node", "time_ns": time.time_ns()} | changes))


class Generator:
    """Hostile messages for the stream of one camera, reproducible from a seed."""

    def __init__(self, rng: random.Random, camera: str, real_camera: str) -> None:
        self.rng = rng
        self.camera = camera
        self.real = real_camera
        self.good = raw(Kind.FRAME, packed(live_frame(camera, 1)), JPEG)
        self.valid_seq = 1_000_000
        kinds: list[tuple[int, Callable[[int], bytes]]] = [
            (6, self.random_bytes),
            (6, self.random_after_prefix),
            (5, self.truncated),
            (5, self.bad_prefix),
            (6, self.header_not_a_map),
            (14, self.wrong_field),
            (6, self.missing_or_extra_field),
            (8, self.hostile_camera),
            (4, self.huge_dimensions),
            (8, self.bad_status),
            (8, self.bad_payload),
            (4, self.spoofed_camera),
            (6, self.bit_flip),
            (1, self.garbage_jpeg),  # valid on the wire: the worker accepts (saves, serves) it
            (1, self.plain_status),
        ]
        self.makers = [make for _, make in kinds]
        self.weights = [weight for weight, _ in kinds]

    def message(self, i: int) -> bytes:
        make = self.rng.choices(self.makers, self.weights)[0]
        return make(i)

    def random_bytes(self, _i: int) -> bytes:
        return self.rng.randbytes(self.rng.randrange(0, 600))

    def random_after_prefix(self, _i: int) -> bytes:
        kind = self.rng.choice([Kind.FRAME, Kind.STATUS, Kind.DESCRIBE_REPLY, self.rng.randrange(256)])
        body = self.rng.randbytes(self.rng.randrange(0, 600))
        return PREFIX.pack(MAGIC, VERSION, kind, self.rng.randrange(0, len(body) + 16)) + body

    def truncated(self, _i: int) -> bytes:
        return self.good[: self.rng.randrange(0, len(self.good) - 1)]

    def bad_prefix(self, _i: int) -> bytes:
        header = packed(live_frame(self.camera, 1))
        choice = self.rng.randrange(7)
        if choice == 0:  # declared header length past the end, or beyond the 64 KiB limit
            length = self.rng.choice([len(header) + 1, 65537, 2**31, 2**32 - 1])
            return PREFIX.pack(MAGIC, VERSION, Kind.FRAME, length) + header + JPEG
        if choice == 1:
            return raw(Kind.FRAME, header, JPEG, version=self.rng.choice([0, 2, 255]))
        if choice == 2:
            return raw(Kind.FRAME, header, JPEG, magic=self.rng.choice([b"BF", b"\x00\x00", b"fb"]))
        if choice == 3:
            return raw(self.rng.choice([0, 6, 7, 255]), header, JPEG)
        if choice == 4:  # a describe request or pull request on a frame stream: decodes, but does not belong
            return self.rng.choice(
                [raw(Kind.DESCRIBE_REQUEST, packed({})), raw(Kind.PULL_REQUEST, packed({"after_seq": 3}))]
            )
        if choice == 5:  # a describe reply on a frame stream
            return raw(Kind.DESCRIBE_REPLY, packed({"node": "n", "time_ns": 1, "cameras": []}))
        return raw(Kind.DESCRIBE_REQUEST, packed({}), b"payload")

    def header_not_a_map(self, _i: int) -> bytes:
        header = self.rng.choice(
            [
                packed([1, 2, 3]),
                packed("camera"),
                packed(7),
                packed(None),
                packed(b"\xff" * 10),
                packed({1: "int key"}),
                packed({b"camera": self.camera}),
                b"\x81\xa1m" + b"\x91" * 60000 + b"\xc0",  # nested deeper than msgpack's stack
                b"\xdd\xff\xff\xff\xff",  # an array of 4 billion items, declared
                b"\xdf\xff\xff\xff\xff",  # a map of 4 billion pairs, declared
                b"\xdb\xff\xff\xff\xff" + b"x" * 10,  # a 4 GiB string, declared
                b"\xc1",  # never used in msgpack
                b"\x82\xa6camera",  # cut off
                packed(live_frame(self.camera, 1)) + b"\x00trailing",
            ]
        )
        return raw(Kind.FRAME, header, JPEG)

    def wrong_field(self, _i: int) -> bytes:
        name = self.rng.choice(FRAME_FIELDS)
        value = self.rng.choice(WRONG_VALUES)
        if name == "meta" and isinstance(value, dict):
            value = "not a map"
        header = live_frame(self.camera, 2)
        header[name] = value
        return raw(Kind.FRAME, packed(header), JPEG)

    def missing_or_extra_field(self, _i: int) -> bytes:
        d = live_frame(self.camera, 3)
        del d[self.rng.choice(FRAME_FIELDS[:-1])]
        d["unexpected"] = self.rng.choice(WRONG_VALUES)
        return raw(Kind.FRAME, packed(d), JPEG)

    def hostile_camera(self, _i: int) -> bytes:
        camera = self.rng.choice(HOSTILE_IDS)
        d = live_frame("placeholder", 4)
        if self.rng.random() < 0.3:  # as a status, with or without a frame attached
            header = live_status(camera, frame=d | {"camera": camera} if self.rng.random() < 0.5 else DROP)
            return raw(Kind.STATUS, packed(header, raw_strings=True), JPEG if "frame" in header else b"")
        d["camera"] = camera
        return raw(Kind.FRAME, packed(d, raw_strings=True), JPEG)

    def huge_dimensions(self, _i: int) -> bytes:
        big = self.rng.choice([16385, 65535, 2**31, 2**32, U64, -16384])
        other = self.rng.choice([1, 16384, big])
        return raw(Kind.FRAME, packed(live_frame(self.camera, 5, width=big, height=other)), JPEG)

    def bad_status(self, _i: int) -> bytes:
        choice = self.rng.randrange(9)
        if choice == 0:
            header = live_status(self.camera, state=self.rng.choice(["hacked", "", "STREAMING", 1, None]))
        elif choice == 1:
            header = live_status(self.camera, retry_in_s=self.rng.choice([math.nan, math.inf, -1.0, 1e18, "1"]))
        elif choice == 2:
            header = live_status(self.camera, attempt=self.rng.choice([-1, 2**31 + 1, 1.0]))
        elif choice == 3:
            header = live_status(self.camera, last_seq=self.rng.choice([-2, U64 + 0.0, "7"]))
        elif choice == 4:
            header = live_status(self.camera, reason=self.rng.choice(["\x1b[2J", "x" * 513, "\x00", 5]))
        elif choice == 5:  # an attached frame of another camera (spoofing through a status)
            header = live_status(self.camera, frame=live_frame(self.real, 6))
            return raw(Kind.STATUS, packed(header), JPEG)
        elif choice == 6:
            header = live_status(self.camera, frame=self.rng.choice([[], "frame", 1, {"camera": self.camera}]))
            return raw(Kind.STATUS, packed(header), JPEG)
        elif choice == 7:  # a payload but no frame
            return raw(Kind.STATUS, packed(live_status(self.camera)), JPEG)
        else:  # an attached frame whose JPEG is cut off
            return raw(Kind.STATUS, packed(live_status(self.camera, frame=live_frame(self.camera, 6))), JPEG[:-1])
        return raw(Kind.STATUS, packed(header))

    def bad_payload(self, _i: int) -> bytes:
        payload = self.rng.choice(
            [
                b"",
                b"\xff",
                b"\xff\xd8",
                b"\xff\xd8\xff\xd9"[:3],
                JPEG[:-1],  # truncated: no EOI
                JPEG[1:],  # no SOI
                self.rng.randbytes(200),
                b"\x89PNG\r\n\x1a\n" + bytes(100),
            ]
        )
        return raw(Kind.FRAME, packed(live_frame(self.camera, 7)), payload)

    def spoofed_camera(self, i: int) -> bytes:
        """Another camera's frames on this stream: a worker must not take them for that camera."""
        camera = self.rng.choice([self.real, self.real + "/annotated", self.camera + "/annotated"])
        return raw(Kind.FRAME, packed(live_frame(camera, i)), JPEG)

    def bit_flip(self, _i: int) -> bytes:
        mutated = bytearray(self.good)
        for _ in range(self.rng.randrange(1, 4)):
            mutated[self.rng.randrange(len(mutated))] ^= 1 << self.rng.randrange(8)
        return bytes(mutated)

    def garbage_jpeg(self, i: int) -> bytes:
        """Valid framing, nonsense inside the JPEG, extreme but legal numbers."""
        seq = U64 if i % 997 == 0 else self.valid_seq + i // 1000  # few distinct numbers: few files saved
        capture = self.rng.choice([0, 1, time.time_ns(), U64])
        width, height = self.rng.choice([(16, 16), (16384, 16384), (1, 16384)])
        payload = b"\xff\xd8" + self.rng.randbytes(self.rng.randrange(0, 300)) + b"\xff\xd9"
        meta = self.rng.choice([{}, {"a": {"b": {"c": [1, 2, {"d": None}]}}}, {"x": msgpack.ExtType(3, b"?")}])
        header = live_frame(self.camera, seq, capture_ns=capture, width=width, height=height, meta=meta)
        return raw(Kind.FRAME, packed(header), payload)

    def plain_status(self, _i: int) -> bytes:
        return raw(Kind.STATUS, packed(live_status(self.camera, state=self.rng.choice(["reconnecting", "streaming"]))))

    def near_max(self) -> bytes:
        """Just under the worker's message size limit: received whole, rejected by the decoder."""
        header = packed(live_frame(self.camera, 8, width="wide"))
        return raw(Kind.FRAME, header, b"\xff\xd8" + bytes(NEAR_MAX) + b"\xff\xd9")


def outcome(message: bytes, camera: str) -> str:
    """What a worker subscribed to `camera` should make of a message: malformed, frame or status."""
    try:
        decoded = decode(message)
    except ProtocolError:
        return "malformed"
    except Exception as exc:  # the decoder promises ProtocolError and nothing else
        return f"decoder raised {type(exc).__name__}"
    if not isinstance(decoded, (Frame, Status)):
        return "malformed"
    wire_camera = decoded.header.camera if isinstance(decoded, Frame) else decoded.camera
    if wire_camera != camera:
        return "malformed"
    if isinstance(decoded, Status) and decoded.frame is None:
        return "status"
    return "frame"


# ----------------------------------------------------------------------------- describe


def malformed_replies(rng: random.Random) -> list[bytes]:
    """Describe replies the worker must reject whole (and keep running)."""
    ok = camera_entry("rogue-described", "tcp://127.0.0.1:9")
    bad_entries: list[dict[str, object]] = []
    wrong: dict[str, list[object]] = {
        "camera": [*HOSTILE_IDS[:-1], 7, None, ["a"]],
        "endpoint": [
            "http://evil/",
            "file:///etc/passwd",
            "tcp://127.0.0.1:1\x00",
            "tcp://" + "a" * 300 + ":1",
            "tcp://\x1b[2J:1",
            5,
            "",
        ],
        "width": ["640", -1, 16385, U64, 1.5, True],
        "height": [None, -(2**63), 2**31],
        "fps": [math.nan, math.inf, -1.0, 1001, "30"],
        "state": ["hacked", "", 0],
        "delivery": ["all", "every_frame", None],
    }  # invalid optional fields (reason, pull_endpoint, ...) are ignored, not the reply: tests/test_protocol.py
    for name, values in wrong.items():
        bad_entries.extend(ok | {name: value} for value in values)
    replies = [reply([entry]) for entry in bad_entries]
    replies += [
        reply([ok], node="x" * 200),
        reply([ok], node="evil\x1b]0;title\x07"),
        reply([ok], time_ns=-1),
        reply([ok], time_ns=1e30),
        raw(Kind.DESCRIBE_REPLY, packed({"node": "rogue-node", "time_ns": 1})),  # no cameras
        reply({"a": ok}),
        reply("cameras"),
        reply([ok, "not a map", 7]),
        reply([{}] * 1025),  # too many cameras
        reply([ok] * 800),  # a header beyond 64 KiB
        reply([ok]) + b"payload",
        raw(Kind.DESCRIBE_REPLY, packed([1, 2])),
        raw(Kind.FRAME, packed(live_frame("rogue-described", 1)), JPEG),  # not a reply at all
        raw(Kind.DESCRIBE_REQUEST, packed({})),
        PREFIX.pack(MAGIC, VERSION, Kind.DESCRIBE_REPLY, 2**32 - 1),
        b"",
        rng.randbytes(500),
        reply([ok])[:-3],
    ]
    return replies
