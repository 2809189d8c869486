"""Per-camera receive statistics (worker_node/stats.py): sequence gaps count dropped frames, and a
jump no publisher could make counts as a restart (docs/protocol.md 5.2, 5.4)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import zmq

from framebus.common.protocol import FrameHeader, encode_frame
from framebus.worker_node.stats import MAX_SEQ_GAP, ReceiveStats
from framebus.worker_node.subscription import Subscription
from tests.support.wire import JPEG, T0, U64

Bind = Callable[[int], tuple[zmq.Socket, str]]


@pytest.mark.parametrize(
    ("last_seq", "seq", "dropped", "restarts"),
    [
        (7, 8, 0, 0),
        (7, 10, 2, 0),
        (7, 8 + MAX_SEQ_GAP, MAX_SEQ_GAP, 0),  # the biggest gap still counted as frames
        (7, 9 + MAX_SEQ_GAP, 0, 1),
        (7, U64, 0, 1),  # not 1.8e19 frames dropped
        (7, 7, 0, 1),  # same seq, another publish_ns: the node started over
        (7, 0, 0, 1),
        (-1, 0, 0, 0),  # a pull worker's "none yet"
    ],
)
def test_gaps_count_drops_and_impossible_jumps_count_restarts(
    last_seq: int, seq: int, dropped: int, restarts: int
) -> None:
    stats = ReceiveStats()
    stats.follow(last_seq, seq)
    assert (stats.dropped, stats.restarts) == (dropped, restarts)


def deliver(publisher: zmq.Socket, sub: Subscription, message: bytes) -> int:
    """Send until the subscription takes the frame (the first may go before it is connected);
    one frame at a time, so the worker's newest-frame socket replaces none. Returns its seq."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        publisher.send(message)
        if sub.socket.poll(100):
            frame = sub.receive()
            if frame is not None:
                return frame.header.seq
    raise AssertionError("the subscription received nothing for 10 s")


def test_a_subscription_counts_a_jump_to_the_last_seq_as_a_restart(bound: Bind) -> None:
    publisher, endpoint = bound(zmq.PUB)  # the node's end, latest delivery
    ctx = zmq.Context()
    sub = Subscription(ctx, endpoint, "cam1")
    try:
        seqs = [1, 3, U64, U64 - 1, 5]  # a gap of one, a hostile jump, two restarts
        messages = [encode_frame(FrameHeader("cam1", seq, T0, T0 + i, 16, 16), JPEG) for i, seq in enumerate(seqs)]
        assert [deliver(publisher, sub, message) for message in messages] == seqs
        assert (sub.stats.dropped, sub.stats.restarts) == (1, 3)
    finally:
        sub.close()
        ctx.destroy(0)
