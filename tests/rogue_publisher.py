"""A rogue capture node for the hostile-peer tests (tests/test_hostile_peers.py), run as its own
process:

    python tests/rogue_publisher.py --count 100000 --warm-up 5000 [--seed 7] [--bad-endpoint]
        [--churn N] [--steal CAMERA] [--describe-flood N]

It answers describe like a node, so a worker told about it (--node) subscribes to its cameras,
but every round its answer comes after a burst of malformed describe replies (wrong types,
hostile camera ids and endpoints, huge camera lists). Its cameras:

- FLOOD, delivery every-frame: an XPUB with XPUB_NODROP, so the worker's SUB does not conflate
  and every message sent is one the worker parses (back-pressured, lossless).
- LONG_ID, delivery latest: a conflated stream (the worker keeps the newest message only) with
  the longest camera id the protocol allows; too long for a file name once a timestamp is added.
- BIG_IDS, delivery latest: one oversized (> ZMQ_MAXMSGSIZE) message each. libzmq drops the
  connection at the message's size field; the XPUB reports it as an unsubscription.

Like a node, it sends a STATUS on every stream twice a second (not counted as sent). Every SIGUSR1
starts the next phase: the first sends messages [0, warm-up), the second the rest. A few of the
flood's messages are just under the worker's size limit (two in the warm-up). Lines on stdout,
for the test to wait on:

    rogue control tcp://127.0.0.1:PORT
    rogue: subscriber on CAMERA
    rogue: describe round N
    rogue: phase N start TIME_NS
    rogue: phase N done TIME_NS {json: messages sent, expected outcomes per camera, ...}
    rogue: oversized message refused on CAMERA
    rogue: control connection dropped
    rogue: described CAMERA              (--steal)

Options that make an answer valid on the wire but deadly for a careless worker (each for its own
test): --bad-endpoint adds a camera whose endpoint libzmq refuses to connect to; --churn N adds
N cameras with fresh ids every round (--churn-endpoint inproc: at an inproc:// address, which
can only ever name a socket inside the worker itself; or at any endpoint given); --elsewhere
ENDPOINT describes a camera at an endpoint that is not the rogue's (a third party's port, a Unix
socket; with --valid-replies-only for a client that takes the first reply); --steal CAMERA
advertises another node's camera id, from the second round on, in a second reply STEAL_DELAY_S
after the first (so that it comes after the real node's answer to the same request);
--describe-flood N, from describe round N on, sends unsolicited describe replies to the worker as
fast as it can (each listing --churn cameras, with fresh ids in every reply), and a status on
every stream between them:

    rogue: describe flood started
    rogue: describe flood sent N       (every 1000 replies)
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import zmq

from common.protocol import (
    MAGIC,
    PREFIX,
    VERSION,
    DescribeRequest,
    Frame,
    Kind,
    ProtocolError,
    Status,
    decode,
    encode_status,
)

FLOOD = "rogue-flood"
LONG_ID = "/".join(c * 64 for c in "LONG")  # 259 characters: the longest valid camera id
BIG_IDS = tuple(f"rogue-big{i}" for i in range(5))
STEAL_DELAY_S = 0.3
HEARTBEAT_S = 0.5  # a STATUS on every stream this often, like a node: the worker never finds one stale
ONE_MIB = 1024 * 1024
OVERSIZED = 33 * ONE_MIB  # above the worker's 32 MiB ZMQ_MAXMSGSIZE
NEAR_MAX = 31 * ONE_MIB  # below it: received, then rejected by the decoder
NEAR_MAX_COUNT = 5
U64 = 2**64 - 1
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) + b"\xff\xd9"

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


def packed(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def raw(kind: int, header: bytes, payload: bytes = b"", *, magic: bytes = MAGIC, version: int = VERSION) -> bytes:
    return PREFIX.pack(magic, version, kind, len(header)) + header + payload


def frame_dict(camera: str, seq: int, **changes: object) -> dict[str, object]:
    now = time.time_ns()
    d: dict[str, object] = {
        "camera": camera,
        "seq": seq,
        "capture_ns": now,
        "publish_ns": now,
        "width": 16,
        "height": 16,
        "encoding": "jpeg",
    }
    d.update(changes)
    return d


class Generator:
    """Hostile messages for the stream of one camera, reproducible from a seed."""

    def __init__(self, rng: random.Random, camera: str, real_camera: str) -> None:
        self.rng = rng
        self.camera = camera
        self.real = real_camera
        self.good = raw(Kind.FRAME, packed(frame_dict(camera, 1)), JPEG)
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
        header = packed(frame_dict(self.camera, 1))
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
                packed(frame_dict(self.camera, 1)) + b"\x00trailing",
            ]
        )
        return raw(Kind.FRAME, header, JPEG)

    def wrong_field(self, _i: int) -> bytes:
        name = self.rng.choice(FRAME_FIELDS)
        value = self.rng.choice(WRONG_VALUES)
        if name == "meta" and isinstance(value, dict):
            value = "not a map"
        header = frame_dict(self.camera, 2)
        header[name] = value
        return raw(Kind.FRAME, packed(header), JPEG)

    def missing_or_extra_field(self, _i: int) -> bytes:
        d = frame_dict(self.camera, 3)
        del d[self.rng.choice(FRAME_FIELDS[:-1])]
        d["unexpected"] = self.rng.choice(WRONG_VALUES)
        return raw(Kind.FRAME, packed(d), JPEG)

    def hostile_camera(self, _i: int) -> bytes:
        camera = self.rng.choice(HOSTILE_IDS)
        d = frame_dict("placeholder", 4)
        if self.rng.random() < 0.3:  # as a status, with or without a frame attached
            header = status_dict(camera, frame=d | {"camera": camera} if self.rng.random() < 0.5 else None)
            return raw(Kind.STATUS, _pack_with_raw_strings(header), JPEG if "frame" in header else b"")
        d["camera"] = camera
        return raw(Kind.FRAME, _pack_with_raw_strings(d), JPEG)

    def huge_dimensions(self, _i: int) -> bytes:
        big = self.rng.choice([16385, 65535, 2**31, 2**32, U64, -16384])
        other = self.rng.choice([1, 16384, big])
        return raw(Kind.FRAME, packed(frame_dict(self.camera, 5, width=big, height=other)), JPEG)

    def bad_status(self, _i: int) -> bytes:
        choice = self.rng.randrange(9)
        if choice == 0:
            header = status_dict(self.camera, state=self.rng.choice(["hacked", "", "STREAMING", 1, None]))
        elif choice == 1:
            header = status_dict(self.camera, retry_in_s=self.rng.choice([math.nan, math.inf, -1.0, 1e18, "1"]))
        elif choice == 2:
            header = status_dict(self.camera, attempt=self.rng.choice([-1, 2**31 + 1, 1.0]))
        elif choice == 3:
            header = status_dict(self.camera, last_seq=self.rng.choice([-2, U64 + 0.0, "7"]))
        elif choice == 4:
            header = status_dict(self.camera, reason=self.rng.choice(["\x1b[2J", "x" * 513, "\x00", 5]))
        elif choice == 5:  # an attached frame of another camera (spoofing through a status)
            header = status_dict(self.camera, frame=frame_dict(self.real, 6))
            return raw(Kind.STATUS, packed(header), JPEG)
        elif choice == 6:
            header = status_dict(self.camera, frame=self.rng.choice([[], "frame", 1, {"camera": self.camera}]))
            return raw(Kind.STATUS, packed(header), JPEG)
        elif choice == 7:  # a payload but no frame
            return raw(Kind.STATUS, packed(status_dict(self.camera)), JPEG)
        else:  # an attached frame whose JPEG is cut off
            return raw(Kind.STATUS, packed(status_dict(self.camera, frame=frame_dict(self.camera, 6))), JPEG[:-1])
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
        return raw(Kind.FRAME, packed(frame_dict(self.camera, 7)), payload)

    def spoofed_camera(self, i: int) -> bytes:
        """Another camera's frames on this stream: a worker must not take them for that camera."""
        camera = self.rng.choice([self.real, self.real + "/annotated", self.camera + "/annotated"])
        return raw(Kind.FRAME, packed(frame_dict(camera, i)), JPEG)

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
        header = frame_dict(self.camera, seq, capture_ns=capture, width=width, height=height, meta=meta)
        return raw(Kind.FRAME, packed(header), payload)

    def plain_status(self, _i: int) -> bytes:
        return raw(Kind.STATUS, packed(status_dict(self.camera, state=self.rng.choice(["reconnecting", "streaming"]))))

    def near_max(self) -> bytes:
        """Just under the worker's message size limit: received whole, rejected by the decoder."""
        header = packed(frame_dict(self.camera, 8, width="wide"))
        return raw(Kind.FRAME, header, b"\xff\xd8" + bytes(NEAR_MAX) + b"\xff\xd9")


def status_dict(camera: str, **changes: object) -> dict[str, object]:
    d: dict[str, object] = {
        "camera": camera,
        "state": "reconnecting",
        "publish_ns": time.time_ns(),
        "last_seq": 1,
        "reason": "",
        "attempt": 1,
        "retry_in_s": 0.5,
    }
    d.update(changes)
    return {k: v for k, v in d.items() if v is not None or k != "frame"}


def _pack_with_raw_strings(header: dict[str, Any]) -> bytes:
    """Lone surrogates go on the wire as the invalid UTF-8 they make (msgpack refuses them otherwise)."""
    return msgpack.packb(header, use_bin_type=True, unicode_errors="surrogatepass")  # type: ignore[no-any-return]


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


def camera_entry(camera: str, endpoint: str, delivery: str = "latest", **changes: object) -> dict[str, object]:
    d: dict[str, object] = {
        "camera": camera,
        "endpoint": endpoint,
        "width": 16,
        "height": 16,
        "fps": 30.0,
        "state": "streaming",
        "delivery": delivery,
    }
    d.update(changes)
    return d


def reply(cameras: object, **changes: object) -> bytes:
    header: dict[str, object] = {"node": "rogue-node", "time_ns": time.time_ns(), "cameras": cameras}
    header.update(changes)
    return raw(Kind.DESCRIBE_REPLY, packed(header))


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
        "reason": ["\x00", "x" * 600],
        "pull_endpoint": ["ftp://x", "tcp://\n:1"],
        "published_fps": [math.nan, -5],
        "reconnects": [-1, "many"],
    }
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
        raw(Kind.FRAME, packed(frame_dict("rogue-described", 1)), JPEG),  # not a reply at all
        raw(Kind.DESCRIBE_REQUEST, packed({})),
        PREFIX.pack(MAGIC, VERSION, Kind.DESCRIBE_REPLY, 2**32 - 1),
        b"",
        rng.randbytes(500),
        reply([ok])[:-3],
    ]
    return replies


class Rogue:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.ctx = zmq.Context()
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control_port = self.control.bind_to_random_port("tcp://127.0.0.1")
        self.monitor = self.control.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.streams: dict[str, zmq.Socket] = {}
        self.endpoints: dict[str, str] = {}
        for camera in (FLOOD, LONG_ID, *BIG_IDS):
            sock = self.ctx.socket(zmq.XPUB)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.XPUB_VERBOSE, 1)
            sock.setsockopt(zmq.SNDHWM, 1000)
            if camera == FLOOD:
                sock.setsockopt(zmq.XPUB_NODROP, 1)  # lossless: send waits for the worker
                sock.setsockopt(zmq.SNDTIMEO, 100)
            port = sock.bind_to_random_port("tcp://127.0.0.1")
            self.streams[camera] = sock
            self.endpoints[camera] = f"tcp://127.0.0.1:{port}"
        self.by_socket = {sock: camera for camera, sock in self.streams.items()}
        self.poller = zmq.Poller()
        for sock in (self.control, self.monitor, *self.streams.values()):
            self.poller.register(sock, zmq.POLLIN)
        self.subscribed: set[str] = set()
        self.big_sent: set[str] = set()
        self.refused: set[str] = set()  # cut off after an oversized message (not for another reason)
        self.rounds = 0
        self.steals: list[tuple[float, bytes]] = []  # (when, to whom) to describe --steal
        self.replies = [] if args.valid_replies_only else malformed_replies(self.rng)
        self.next_heartbeat = 0.0
        self.flood_to: bytes | None = None  # --describe-flood: the worker's control identity
        self.flood_sent = 0
        self.stop = False
        self.go = 0
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_go)

    def _on_stop(self, _sig: int, _frame: object) -> None:
        self.stop = True

    def _on_go(self, _sig: int, _frame: object) -> None:
        self.go += 1

    def valid_reply(self, steal: bool = False) -> bytes:
        cameras = [camera_entry(FLOOD, self.endpoints[FLOOD], "every-frame")]
        cameras += [camera_entry(c, self.endpoints[c]) for c in (LONG_ID, *BIG_IDS)]
        if self.args.bad_endpoint:
            cameras.append(camera_entry("rogue-noport", "tcp://rogue-no-port"))
        if steal:
            cameras.append(camera_entry(self.args.steal, self.endpoints[LONG_ID]))
        cameras += [camera_entry(f"rogue-elsewhere{i}", e) for i, e in enumerate(self.args.elsewhere)]
        churn = {"tcp": self.endpoints[LONG_ID], "inproc": "inproc://rogue-void"}.get(
            self.args.churn_endpoint, self.args.churn_endpoint
        )
        cameras += [
            camera_entry(f"churn{self.rounds}.{self.flood_sent}-{i}", churn, state="ended", fps=0, width=0, height=0)
            for i in range(self.args.churn)
        ]
        cameras += [camera_entry(f"many-{i}", self.endpoints[LONG_ID]) for i in range(self.args.many)]
        header = packed({"node": "rogue-node", "time_ns": time.time_ns(), "cameras": cameras})
        return raw(Kind.DESCRIBE_REPLY, header)  # by hand: encode_describe_reply would refuse > 64 KiB

    def say(self, line: str) -> None:
        print(line, flush=True)

    def service(self, timeout_ms: int = 0) -> None:
        """Answer describe requests, note subscriptions and dropped connections, keep streams alive."""
        if time.monotonic() >= self.next_heartbeat:
            self.next_heartbeat = time.monotonic() + HEARTBEAT_S
            for camera, sock in self.streams.items():
                try:
                    sock.send(encode_status(Status(camera, "streaming", time.time_ns())), zmq.NOBLOCK)
                except zmq.Again:
                    pass  # the lossless stream is full: the flood keeps it alive
        while self.steals and self.steals[0][0] <= time.monotonic():
            _, identity = self.steals.pop(0)
            self.control.send_multipart([identity, self.valid_reply(steal=True)])
            self.say(f"rogue: described {self.args.steal}")
        if self.flood_to is not None:
            self.flood_describe(self.flood_to)
            timeout_ms = 0
        for sock, _ in self.poller.poll(timeout_ms):
            if sock is self.control:
                self.answer()
            elif sock is self.monitor:
                sock.recv_multipart()
                self.say("rogue: control connection dropped")
            else:
                self.subscription(sock)

    def answer(self) -> None:
        while self.control.poll(0, zmq.POLLIN):
            identity, request = self.control.recv_multipart()
            try:
                if not isinstance(decode(request), DescribeRequest):
                    continue
            except ProtocolError:
                continue
            self.rounds += 1
            for message in self.replies:
                self.control.send_multipart([identity, message])
            self.control.send_multipart([identity, self.valid_reply()])
            if self.args.steal and self.rounds >= 2:  # the worker has the real one by now
                self.steals.append((time.monotonic() + STEAL_DELAY_S, identity))
            if self.args.oversized_describe and self.rounds == self.args.oversized_describe:
                self.control.send_multipart([identity, reply([]) + bytes(2 * ONE_MIB)])
            self.say(f"rogue: describe round {self.rounds}")
            if self.args.describe_flood and self.rounds == self.args.describe_flood:
                self.flood_to = identity
                self.say("rogue: describe flood started")

    def flood_describe(self, identity: bytes, batch: int = 20) -> None:
        """Unsolicited replies, as many as the worker's socket takes (the rest are dropped by our
        ROUTER), and a status on every stream: no socket of the worker may starve another."""
        for _ in range(batch):
            try:
                self.control.send_multipart([identity, self.valid_reply()], zmq.NOBLOCK)
            except zmq.Again:
                pass
            self.flood_sent += 1
            if self.flood_sent % 1000 == 0:
                self.say(f"rogue: describe flood sent {self.flood_sent}")
        for camera, sock in self.streams.items():
            if camera != FLOOD:
                try:
                    sock.send(encode_status(Status(camera, "reconnecting", time.time_ns())), zmq.NOBLOCK)
                except zmq.Again:
                    pass

    def subscription(self, sock: zmq.Socket) -> None:
        camera = self.by_socket[sock]
        while sock.poll(0, zmq.POLLIN):
            event = sock.recv()
            if event[:1] == b"\x01" and camera not in self.subscribed:
                self.subscribed.add(camera)
                self.say(f"rogue: subscriber on {camera}")
            elif event[:1] == b"\x00" and camera in self.big_sent and camera not in self.refused:
                self.refused.add(camera)
                self.say(f"rogue: oversized message refused on {camera}")

    def plan(self) -> list[tuple[str, bytes, str]]:
        """(camera, message, expected outcome): nine in ten on the lossless stream."""
        flood = Generator(self.rng, FLOOD, self.args.real)
        conflated = Generator(self.rng, LONG_ID, self.args.real)
        plan = []
        # Two in the warm-up: glibc raises its mmap threshold when the first is freed, and keeps
        # the second's block in the heap for reuse (a one-off step of 32 MiB, not a leak).
        warm_up, count = self.args.warm_up, self.args.near_max
        near_max_at = {warm_up * (k + 1) // 3 for k in range(min(2, count))}
        rest = count - len(near_max_at)
        near_max_at |= {warm_up + (self.args.count - warm_up) * (k + 1) // (rest + 1) for k in range(rest)}
        for i in range(self.args.count - len(BIG_IDS)):
            if i in near_max_at:
                message = flood.near_max()
                plan.append((FLOOD, message, outcome(message, FLOOD)))
            elif i % 10 == 9:
                message = conflated.message(i)
                plan.append((LONG_ID, message, outcome(message, LONG_ID)))
            else:
                message = flood.message(i)
                plan.append((FLOOD, message, outcome(message, FLOOD)))
        big = b"\x00" * OVERSIZED
        for k, camera in enumerate(BIG_IDS):  # spread over the main phase
            at = self.args.warm_up + (k + 1) * (len(plan) - self.args.warm_up) // (len(BIG_IDS) + 1)
            plan.insert(at, (camera, big, "refused"))
        return plan

    def send(self, camera: str, message: bytes, deadline: float) -> None:
        sock = self.streams[camera]
        if camera in BIG_IDS:
            self.big_sent.add(camera)
        if camera != FLOOD:
            try:
                sock.send(message, zmq.NOBLOCK, copy=len(message) < ONE_MIB)
            except zmq.Again:
                pass  # the worker's conflating socket or our queue is full: dropped, like any PUB
            return
        while True:
            try:
                sock.send(message, 0, copy=len(message) < ONE_MIB)
                return
            except zmq.Again:  # the worker is busy: wait for it (and answer its describes meanwhile)
                self.service()
                if self.stop or time.monotonic() > deadline:
                    raise TimeoutError("the worker stopped reading the lossless stream") from None

    def run(self) -> None:
        plan = self.plan()
        self.say(f"rogue control tcp://127.0.0.1:{self.control_port}")
        phases = [(0, self.args.warm_up), (self.args.warm_up, len(plan))]
        for number, (start, end) in enumerate(phases, 1):
            while self.go < number and not self.stop:
                self.service(100)
            if self.stop:
                break
            self.say(f"rogue: phase {number} start {time.time_ns()}")
            deadline = time.monotonic() + self.args.timeout
            sent: Counter[str] = Counter()
            expected: dict[str, Counter[str]] = {}
            for i in range(start, end):
                camera, message, result = plan[i]
                self.send(camera, message, deadline)
                sent[camera] += 1
                expected.setdefault(camera, Counter())[result] += 1
                if i % 256 == 0:
                    self.service()
            summary = {"sent": sum(sent.values()), "per_camera": sent, "expected": expected}
            self.say(f"rogue: phase {number} done {time.time_ns()} {json.dumps(summary)}")
        while not self.stop:
            self.service(100)
        self.ctx.destroy(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="messages to send in all")
    parser.add_argument("--warm-up", type=int, default=5_000, help="of which the first phase sends these")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--real", default="real", help="the real camera's id (spoofed on the rogue's streams)")
    parser.add_argument("--timeout", type=float, default=90.0, help="give up a phase the worker stalls for this long")
    parser.add_argument(
        "--oversized-describe", type=int, default=0, metavar="N", help="in describe round N, answer > 1 MiB too"
    )
    parser.add_argument("--near-max", type=int, default=NEAR_MAX_COUNT, metavar="N", help="messages just under 32 MiB")
    parser.add_argument("--bad-endpoint", action="store_true")
    parser.add_argument("--churn", type=int, default=0, metavar="N")
    parser.add_argument(
        "--many",
        type=int,
        default=0,
        metavar="N",
        help="also describe N cameras whose ids stay (their streams stay silent)",
    )
    parser.add_argument(
        "--churn-endpoint",
        default="tcp",
        help="the churned cameras' endpoint: tcp (one of our streams), inproc (an inproc:// name, in the worker's "
        "own process), or any endpoint",
    )
    parser.add_argument(
        "--elsewhere",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="also describe a camera at ENDPOINT (another host's port, a Unix socket; repeatable)",
    )
    parser.add_argument("--steal", default="", metavar="CAMERA")
    parser.add_argument(
        "--valid-replies-only", action="store_true", help="answer describe without the malformed replies first"
    )
    parser.add_argument(
        "--describe-flood", type=int, default=0, metavar="N", help="from describe round N on, flood describe replies"
    )
    Rogue(parser.parse_args()).run()


if __name__ == "__main__":
    main()
