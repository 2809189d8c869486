"""A node, run in the test's own process, whose one camera sends FRAMEs with a `meta` nested
1023 levels (issue 11: one such message killed the save and process workers). It answers
describe requests like a node, and delivers `every-frame` (an XPUB with XPUB_NODROP): a worker
parses every message sent, so its count of malformed messages says it has seen them all.
All its sockets live in its own thread."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import zmq

from framebus.common.protocol import (
    CameraInfo,
    DescribeReply,
    DescribeRequest,
    ProtocolError,
    Status,
    decode,
    encode_describe_reply,
    encode_status,
)
from tests.support.wire import deep_meta_frame

CAMERA = "deep"
LEVELS = 1023  # the most msgpack reads: the header map is one more level
HEARTBEAT_S = 0.5


class DeepMetaNode(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True, name="deep-meta-node")
        self.ctx = zmq.Context()
        self.control = self.ctx.socket(zmq.ROUTER)
        self.stream = self.ctx.socket(zmq.XPUB)
        for sock in (self.control, self.stream):
            sock.setsockopt(zmq.LINGER, 0)
        self.stream.setsockopt(zmq.XPUB_VERBOSE, 1)  # one subscription message per subscriber
        self.stream.setsockopt(zmq.XPUB_NODROP, 1)
        self.stream.setsockopt(zmq.SNDTIMEO, 100)
        self.endpoint = f"tcp://127.0.0.1:{self.stream.bind_to_random_port('tcp://127.0.0.1')}"
        self.control_endpoint = f"tcp://127.0.0.1:{self.control.bind_to_random_port('tcp://127.0.0.1')}"
        self.subscribers = 0
        self.sent = 0
        self._to_send = 0
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self.error: BaseException | None = None

    def __enter__(self) -> DeepMetaNode:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stopping.set()
        self.join(5)
        self.ctx.destroy(0)
        assert self.error is None, f"the deep-meta node failed: {self.error!r}"

    def wait_subscribers(self, count: int, timeout: float) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: self.subscribers >= count or self.error is not None, timeout):
                raise AssertionError(f"{self.subscribers} of {count} workers subscribed to {CAMERA} in {timeout} s")

    def send(self, count: int, timeout: float) -> None:
        """Send `count` deep-meta frames (lists and maps in turn); returns once all are sent."""
        with self._lock:
            self._to_send += count
            target = self.sent + count
            if not self._lock.wait_for(lambda: self.sent >= target or self.error is not None, timeout):
                raise AssertionError(f"sent {self.sent} of {target} deep-meta frames in {timeout} s")

    def run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # noqa: BLE001 - reported by __exit__ and the waits
            with self._lock:
                self.error = exc
                self._lock.notify_all()

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.stream, zmq.POLLIN)
        next_heartbeat = 0.0
        while not self._stopping.is_set():
            if time.monotonic() >= next_heartbeat:  # a live node's status, so the camera is never stale
                next_heartbeat = time.monotonic() + HEARTBEAT_S
                try:
                    self.stream.send(encode_status(Status(CAMERA, "streaming", time.time_ns())), zmq.NOBLOCK)
                except zmq.Again:
                    pass
            with self._lock:
                pending = self._to_send
            if pending:
                self._send_one()
            for sock, _ in poller.poll(0 if pending else 100):
                if sock is self.control:
                    self._answer()
                else:
                    self._subscription()

    def _send_one(self) -> None:
        container = "list" if self.sent % 2 == 0 else "map"
        message = deep_meta_frame(LEVELS, container, camera=CAMERA, seq=self.sent, capture_ns=time.time_ns())
        try:
            self.stream.send(message)  # waits up to SNDTIMEO for a slow subscriber, never drops
        except zmq.Again:
            return  # again on the next turn, after answering requests
        with self._lock:
            self.sent += 1
            self._to_send -= 1
            self._lock.notify_all()

    def _answer(self) -> None:
        identity, *parts = self.control.recv_multipart()
        try:
            if len(parts) != 1 or not isinstance(decode(parts[0]), DescribeRequest):
                return
        except ProtocolError:
            return
        camera = CameraInfo(CAMERA, self.endpoint, 16, 16, 30.0, "streaming", "every-frame")
        self.control.send_multipart(
            [identity, encode_describe_reply(DescribeReply("deep-node", time.time_ns(), (camera,)))]
        )

    def _subscription(self) -> None:
        event = self.stream.recv()
        if event[:1] == b"\x01":
            with self._lock:
                self.subscribers += 1
                self._lock.notify_all()
