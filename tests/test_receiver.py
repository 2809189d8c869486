"""worker_node.receiver and subscription in-process, against real publishers: a node's
describe endpoint and PUB socket (tests/support/fake_node.py), and a publisher that connects out to a
worker listening on ipc://."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from framebus.common.protocol import FrameHeader, encode_frame
from framebus.common.publisher import FramePublisher
from framebus.common.sockets import StreamOptions
from framebus.common.words import State
from framebus.worker_node.receiver import FrameReceiver
from framebus.worker_node.subscription import MAX_READS, STALE, Subscription
from tests.support.fake_node import FakeNode

JPEG = b"\xff\xd8" + b"\0" * 100 + b"\xff\xd9"


def frame_message(camera: str, seq: int) -> bytes:
    now = time.time_ns()
    return encode_frame(FrameHeader(camera, seq, now, now, 64, 48), JPEG)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(0)


def test_follows_a_described_camera_and_hands_out_its_newest_frames(ctx: zmq.Context) -> None:
    node = FakeNode("cam1", 64, 48, lambda n: frame_message("cam1", n), interval=0.01)
    receiver = FrameReceiver(ctx, [node.endpoint])
    try:
        seqs: list[int] = []
        deadline = time.monotonic() + 20
        while len(seqs) < 5:
            assert time.monotonic() < deadline, f"frames seen: {seqs}"
            seqs += [f.header.seq for sub, f in receiver.poll(0.5) if sub.name == "cam1"]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # new frames only, in order
        sub = receiver.subscriptions["cam1"]
        assert sub.status.state == State.STREAMING and receiver.camera_info["cam1"].fps == pytest.approx(100)
        assert sub.stats.received == len(seqs)
        assert sub.stats.received + sub.stats.dropped >= seqs[-1] - seqs[0] + 1  # gaps counted as dropped
        assert sum(sub.stats.age_counts) == sub.stats.received  # each frame's age in the histogram
        assert [h.answering for h in receiver.node_health()] == [True]
    finally:
        receiver.close()
        node.close()


def test_a_camera_that_goes_silent_is_stale_then_receiving_again(ctx: zmq.Context) -> None:
    sending = [True]
    node = FakeNode("cam1", 64, 48, lambda n: frame_message("cam1", n) if sending[0] else b"", interval=0.02)
    receiver = FrameReceiver(ctx, [node.endpoint], stale_after_s=0.5)
    try:
        deadline = time.monotonic() + 20
        while not receiver.poll(0.2):
            assert time.monotonic() < deadline, "no frame"
        sending[0] = False  # empty messages are malformed: nothing counts as heard
        sub = receiver.subscriptions["cam1"]
        while sub.status.state != STALE:
            assert time.monotonic() < deadline, "never stale"
            receiver.poll(0.2)
        assert sub.stats.stale_since is not None
        sending[0] = True
        while sub.status.state != State.STREAMING:
            assert time.monotonic() < deadline, "never streaming again"
            receiver.poll(0.2)
        assert sub.stats.stale_since is None and sub.stats.stale_total > 0
    finally:
        receiver.close()
        node.close()


def test_listening_on_ipc_receives_from_a_publisher_that_connects_out(ctx: zmq.Context, tmp_path: Path) -> None:
    listen = f"ipc://{tmp_path}/in"
    receiver = FrameReceiver(ctx, [], listen=[listen])
    publisher = FramePublisher(ctx, f"ipc://{tmp_path}/out", StreamOptions(), connect=(listen,))
    try:
        got: list[str] = []
        seq, deadline = 0, time.monotonic() + 20
        while "edge-cam" not in got:  # sent again until the connection is up (a PUB drops before it)
            assert time.monotonic() < deadline, "nothing received"
            seq += 1
            publisher.try_send(frame_message("edge-cam", seq))
            got += [f.header.camera for _, f in receiver.poll(0.1)]
        (sub,) = receiver.subscriptions.values()
        assert sub.listen and sub.name == listen and sub.stats.received >= 1
    finally:
        publisher.close()
        receiver.close()


def flood_publisher(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    """A PUB that queues whatever the test sends it faster than it is read."""
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 100_000)
    pub.bind(endpoint)
    return pub


def join(pub: zmq.Socket, sub: Subscription, deadline: float) -> int:
    """Frames of cam1 until `sub` has one (a PUB drops what it sends before the SUB has joined);
    the sequence number sent last."""
    seq = 0
    while sub.newest() is None:
        assert time.monotonic() < deadline, "the subscription never joined"
        seq += 1
        pub.send(frame_message("cam1", seq))
        sub.socket.poll(50)
    return seq


def test_newest_reads_a_bounded_batch_and_keeps_the_newest_frame(ctx: zmq.Context, tmp_path: Path) -> None:
    """The read that FrameReceiver.poll and RemoteCapture.grab share: a peer sending faster than
    we read cannot keep it from returning."""
    endpoint = f"ipc://{tmp_path}/flood"
    pub = flood_publisher(ctx, endpoint)
    sub = Subscription(ctx, endpoint, "cam1", every_frame=True)  # every frame: a queue, not conflated
    try:
        deadline = time.monotonic() + 20
        seq = join(pub, sub, deadline)
        before = sub.stats.received
        for _ in range(3 * MAX_READS):
            seq += 1
            pub.send(frame_message("cam1", seq))
        assert sub.socket.poll(5000)
        first = sub.newest()  # an every-frame stream: the next frame, not the newest
        assert first is not None and sub.stats.received == before + 1
    finally:
        sub.close()
        pub.close(0)


def test_a_subscription_read_without_the_pump_keeps_the_newest_frame(ctx: zmq.Context, tmp_path: Path) -> None:
    """pump=False (the relay): the caller's own thread reads the SUB, and what one read finds
    queued comes out as its newest frame, as the pump's slot would hand it over."""
    endpoint = f"ipc://{tmp_path}/burst"
    pub = flood_publisher(ctx, endpoint)
    sub = Subscription(ctx, endpoint, "cam1", pump=False)
    try:
        assert type(sub.socket) is zmq.Socket  # no pump thread in between
        deadline = time.monotonic() + 20
        seq = join(pub, sub, deadline)
        first, burst = seq + 1, 200
        for seq in range(first, first + burst):
            pub.send(frame_message("cam1", seq))
        got: list[int] = []
        while not got or got[-1] != seq:
            assert time.monotonic() < deadline, f"the burst's last frame never came: {got[-5:]}"
            sub.socket.poll(1000)
            frames = sub.pending()
            assert len(frames) <= 1, "a conflated stream hands over one frame per read"
            got += [f.header.seq for f in frames]
        assert got == sorted(got) and len(got) < burst // 2, got  # newest of each read, in order
    finally:
        sub.close()
        pub.close(0)
