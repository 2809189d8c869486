"""common.stream: a StreamPublisher on an inproc socket, read by a plain SUB; its status
cadence, its describe entry, and where default stream endpoints go."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
import zmq

from framebus.common.endpoint import parse_endpoint
from framebus.common.protocol import Frame, Status, decode
from framebus.common.publisher import FramePublisher
from framebus.common.sockets import StreamOptions
from framebus.common.stream import StreamPublisher, endpoint_after
from framebus.common.words import Delivery, State

JPEG = b"\xff\xd8 not decoded here \xff\xd9"
_names = itertools.count()


class Tap:
    def __init__(self) -> None:
        self.frames: list[int] = []
        self.statuses = 0
        self.forgotten = 0

    def offer_frame(self, seq: int, message: bytes) -> None:
        self.frames.append(seq)

    def offer_status(self, message: bytes) -> None:
        self.statuses += 1

    def forget_frame(self) -> None:
        self.forgotten += 1


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(0)


def stream_and_sub(
    ctx: zmq.Context, interval: float = 60.0, tap: Tap | None = None
) -> tuple[StreamPublisher, zmq.Socket]:
    socket = FramePublisher(ctx, f"inproc://stream-{next(_names)}", StreamOptions())
    stream = StreamPublisher("cam1", socket, interval, tap)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(stream.endpoint)
    return stream, sub


def receive(sub: zmq.Socket) -> Frame | Status:
    assert sub.poll(5000)
    message = decode(sub.recv())
    assert isinstance(message, (Frame, Status))
    return message


def test_sequence_numbers_count_frames_sent(ctx: zmq.Context) -> None:
    tap = Tap()
    stream, sub = stream_and_sub(ctx, tap=tap)
    try:
        for n in range(3):
            assert stream.send_frame(JPEG, (4, 2), 1000 + n, meta={"n": n})
            frame = receive(sub)
            assert isinstance(frame, Frame)
            assert (frame.header.seq, frame.header.capture_ns, frame.header.meta) == (n, 1000 + n, {"n": n})
            assert bytes(frame.jpeg) == JPEG
    finally:
        stream.close()
    assert tap.frames == [0, 1, 2]
    assert stream.last_frame is not None and stream.last_frame.header.seq == 2


def test_a_status_carries_the_last_frame_and_a_clean_reason(ctx: zmq.Context) -> None:
    tap = Tap()
    stream, sub = stream_and_sub(ctx, tap=tap)
    try:
        stream.send_status(State.CONNECTING, "no frame yet")
        first = receive(sub)
        stream.send_frame(JPEG, (4, 2), 5)
        receive(sub)
        stream.send_status(State.RECONNECTING, "line\nbreak" + "x" * 600, attempt=2, retry_in_s=10**9)
        second = receive(sub)
    finally:
        stream.close()
    assert isinstance(first, Status) and first.frame is None and first.last_seq == -1
    assert isinstance(second, Status) and second.state == State.RECONNECTING
    assert second.reason.startswith("line break") and len(second.reason) == 500
    assert second.frame is not None and second.frame.header.seq == second.last_seq == 0
    assert (second.attempt, second.retry_in_s) == (2, 86400.0)
    assert tap.statuses == 2


def test_a_forgotten_frame_rides_no_status_but_its_seq_is_still_said(ctx: zmq.Context) -> None:
    tap = Tap()
    stream, sub = stream_and_sub(ctx, tap=tap)
    try:
        for n in range(2):
            stream.send_frame(JPEG, (4, 2), n)
            receive(sub)
        stream.forget_frame()  # nobody watched for a while: the frame is stale
        stream.send_status(State.STREAMING)
        status = receive(sub)
    finally:
        stream.close()
    assert isinstance(status, Status) and status.frame is None and status.last_seq == 1
    assert tap.forgotten == 1 and stream.last_frame is None


def test_status_is_due_on_a_change_of_state_or_after_the_interval(ctx: zmq.Context) -> None:
    stream, _sub = stream_and_sub(ctx, interval=0.2)
    try:
        assert stream.status_due(State.CONNECTING)  # nothing said yet
        stream.send_status(State.CONNECTING)
        assert not stream.status_due(State.CONNECTING)
        assert stream.status_due(State.SOURCE_ERROR)
        assert 0 < stream.status_wait() <= 0.2
        deadline = time.monotonic() + 5
        while not stream.status_due(State.CONNECTING):
            assert time.monotonic() < deadline
            time.sleep(stream.status_wait())  # the very wait a publish loop makes
        stream.send_frame(JPEG, (4, 2), 1)
        assert not stream.status_due(State.STREAMING) and stream.status_due(State.RECONNECTING)
    finally:
        stream.close()


def test_describe_entry_follows_what_was_sent(ctx: zmq.Context) -> None:
    stream, _sub = stream_and_sub(ctx)
    try:
        before = stream.info()
        stream.send_frame(JPEG, (640, 480), 1)
        after = stream.info(fps=15.0)
        stream.send_status(State.ENDED, "end of video file")
        ended = stream.info()
    finally:
        stream.close()
    assert (before.state, before.width, before.delivery) == (State.CONNECTING, 0, Delivery.LATEST)
    assert (after.camera, after.endpoint, after.width, after.height, after.fps, after.state) == (
        "cam1", stream.endpoint, 640, 480, 15.0, State.STREAMING
    )  # fmt: skip
    assert ended.state == State.ENDED


@pytest.mark.parametrize(
    ("base", "offset", "suffix", "expected"),
    [
        ("tcp://127.0.0.1:5555", 1, "cam1", "tcp://127.0.0.1:5556"),
        ("tcp://[::1]:6000", 1000, "pull", "tcp://[::1]:7000"),
        ("tcp://*:*", 3, "x", "tcp://*:*"),
        ("tcp://127.0.0.1:65535", 1, "x", None),
        ("ipc:///tmp/node", 1, "cam1", "ipc:///tmp/node-cam1"),
    ],
)
def test_endpoint_after(base: str, offset: int, suffix: str, expected: str | None) -> None:
    placed = endpoint_after(parse_endpoint(base, bind=True), offset, suffix)
    assert (str(placed) if placed else None) == expected
