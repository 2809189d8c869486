"""A rogue capture node for the hostile-peer tests (tests/test_hostile_peers.py), run as its own
process: the sockets and the command line; the messages it sends are its corpus,
tests/support/rogue_corpus.py.

    python tests/support/rogue_publisher.py --count 100000 --warm-up 5000 [--seed 7] [--bad-endpoint]
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
import random
import signal
import time
from collections import Counter

import zmq

from framebus.common.protocol import DescribeRequest, Kind, ProtocolError, Status, decode, encode_status
from tests.support.rogue_corpus import BIG_IDS, FLOOD, LONG_ID, ONE_MIB, Generator, malformed_replies, outcome, reply
from tests.support.wire import camera_entry, packed, raw

STEAL_DELAY_S = 0.3
HEARTBEAT_S = 0.5  # a STATUS on every stream this often, like a node: the worker never finds one stale
OVERSIZED = 33 * ONE_MIB  # above the worker's 32 MiB ZMQ_MAXMSGSIZE
NEAR_MAX_COUNT = 5


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
