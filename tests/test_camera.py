"""capture_node.camera in one process: a Camera with a fake Source, its StreamPublisher on
inproc sockets, read by plain SUB and DEALER sockets. What goes out, in what order, and what
the stream says when the source fails or ends."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import zmq

from framebus.capture_node.camera import Camera
from framebus.capture_node.config import CameraConfig
from framebus.capture_node.sources import Source, SourceError, SourceInfo
from framebus.common import jpeg
from framebus.common.protocol import Frame, Status, decode, encode_pull_request
from framebus.common.pull_server import PullServer
from framebus.common.words import Delivery, State

DEADLINE_S = 10.0
_names = itertools.count()


class FakeSource:
    """`frames` pictures of 32x24 (each a different grey), then the end (a file) or forever."""

    def __init__(self, frames: int | None = None, fps: float = 200.0, is_file: bool = False) -> None:
        self.info = SourceInfo(32, 24, fps, paced=True, is_file=is_file)
        self._left = frames
        self._count = 0
        self.closed = threading.Event()

    def read(self) -> np.ndarray | None:
        if self._left is not None:
            if self._left == 0:
                return None
            self._left -= 1
        self._count += 1
        return np.full((24, 32, 3), self._count % 256, np.uint8)

    def rewind(self) -> bool:
        return False

    def close(self) -> None:
        self.closed.set()


def cam_config(**fields: object) -> CameraConfig:
    n = next(_names)
    return CameraConfig(id="cam1", bind=f"inproc://frames-{n}", pull_bind=f"inproc://pull-{n}", **fields)  # type: ignore[arg-type]


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(0)


def start(ctx: zmq.Context, config: CameraConfig, opener: object, status_interval: float = 0.1) -> Camera:
    camera = Camera(ctx, config, status_interval, opener=opener)  # type: ignore[arg-type]
    camera.start()
    return camera


def subscriber(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    return sub


def receive(sock: zmq.Socket) -> Frame | Status:
    assert sock.poll(int(DEADLINE_S * 1000)), "nothing arrived in time"
    message = decode(sock.recv())
    assert isinstance(message, (Frame, Status))
    return message


def receive_until(sock: zmq.Socket, wanted: type, state: str | None = None) -> Frame | Status:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        message = receive(sock)
        if isinstance(message, wanted) and (state is None or getattr(message, "state", None) == state):
            return message
    raise AssertionError(f"no {wanted.__name__} {state or ''} within {DEADLINE_S} s")


def test_frames_go_out_encoded_in_sequence(ctx: zmq.Context) -> None:
    camera = start(ctx, cam_config(), lambda _config: FakeSource())
    sub = subscriber(ctx, camera.endpoint)
    try:
        frames = [receive_until(sub, Frame) for _ in range(5)]
    finally:
        camera.stop()
    seqs = [f.header.seq for f in frames if isinstance(f, Frame)]
    assert seqs == sorted(set(seqs)), seqs  # conflated: some may be skipped, never repeated or reordered
    first = frames[0]
    assert isinstance(first, Frame)
    assert (first.header.camera, first.header.width, first.header.height) == ("cam1", 32, 24)
    assert jpeg.decode_bgr(first.jpeg).shape == (24, 32, 3)
    assert camera.state().published >= 5 and camera.state().state == State.STREAMING


def status_of(ctx: zmq.Context, config: CameraConfig, opener: object, state: State) -> tuple[Camera, Status]:
    """The camera's first status of `state`, read by a subscriber; the camera is stopped."""
    camera = start(ctx, config, opener)
    sub = subscriber(ctx, camera.endpoint)
    try:
        status = receive_until(sub, Status, state)
    finally:
        camera.stop()
    assert isinstance(status, Status)
    return camera, status


def test_a_source_that_cannot_open_is_told_in_status(ctx: zmq.Context) -> None:
    def refuse(_config: CameraConfig) -> Source:
        raise SourceError("cannot open rtsp://10.0.0.7/x: connection refused\x1b[2J")

    _camera, status = status_of(ctx, cam_config(reconnect_max=5.0), refuse, State.SOURCE_ERROR)
    assert status.reason == "cannot open rtsp://10.0.0.7/x: connection refused [2J"  # no control characters
    assert status.attempt >= 1 and 0 < status.retry_in_s <= 6.0
    assert status.last_seq == -1 and status.frame is None


def test_a_file_that_ends_says_so_with_its_last_frame(ctx: zmq.Context) -> None:
    camera, ended = status_of(ctx, cam_config(), lambda _config: FakeSource(frames=3, is_file=True), State.ENDED)
    assert ended.reason == "end of video file"
    assert ended.frame is not None and ended.frame.header.seq == ended.last_seq  # rides along under conflation
    assert camera.state().published == ended.last_seq + 1


def test_every_frame_delivery_loses_nothing(ctx: zmq.Context) -> None:
    """The XPUB waits for its subscriber and for room in its queue: all 40 frames, in order, then
    the end (without a frame: it was delivered already)."""
    config = cam_config(delivery=Delivery.EVERY_FRAME, queue_frames=2)
    camera = start(ctx, config, lambda _config: FakeSource(frames=40, fps=1000.0, is_file=True))
    sub = subscriber(ctx, camera.endpoint)
    try:
        seqs = []
        while True:
            message = receive(sub)
            if isinstance(message, Frame):
                seqs.append(message.header.seq)
            elif message.state == State.ENDED:
                break
    finally:
        camera.stop()
    assert seqs == list(range(40))
    assert message.frame is None and message.last_seq == 39


def test_the_pull_server_is_fed_every_frame(ctx: zmq.Context) -> None:
    camera = start(ctx, cam_config(), lambda _config: FakeSource())
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(camera.pull_endpoint)
    try:
        dealer.send(encode_pull_request(-1))
        first = receive(dealer)
        assert isinstance(first, Frame)
        dealer.send(encode_pull_request(first.header.seq))
        second = receive(dealer)
    finally:
        camera.stop()
    assert isinstance(second, Frame) and second.header.seq > first.header.seq


def test_a_pull_server_stopped_first_ignores_a_late_status(ctx: zmq.Context) -> None:
    """Camera.stop() stops the pull server before the publish thread has ended, and the serving
    thread may close its wake-up socket before stop() writes to it: neither may raise."""
    pull = PullServer(ctx, f"inproc://pull-late-{next(_names)}", "cam1")
    pull.start()
    pull.stop()
    pull.offer_status(b"a status the publish thread sent while stopping")
    pull.stop()
