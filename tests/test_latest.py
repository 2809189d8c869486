"""Frame sockets for "latest" delivery (common/latest.py): newest message only, no leak.

The leak they replace is in libzmq's ZMQ_CONFLATE (a message lost whenever its I/O thread
hands one over while the reader holds the buffer's lock): it shows as malloc's bytes in use
growing by whole messages: 26 to 71 of this test's 16,000 in our runs. Here a node's
publisher floods a subscriber made by connect_frame_subscriber, read the way FrameReceiver
reads, and malloc's bytes in use must end where they started, within a few messages."""

from __future__ import annotations

import ctypes
import multiprocessing
import time
from multiprocessing import Queue

import pytest
import zmq

from framebus.common.latest import LatestSocket
from framebus.common.protocol import FrameHeader, decode, encode_frame
from framebus.common.sockets import (
    StreamOptions,
    bind_frame_listener,
    bind_frame_publisher,
    bound_endpoint,
    connect_frame_subscriber,
)

MESSAGE_BYTES = 32 * 1024
MESSAGES = 16_000
LIBC = ctypes.CDLL("libc.so.6")


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def malloc_in_use() -> int:
    """Bytes malloc has handed out and not had back, in every arena and in mmap'd blocks."""
    LIBC.mallinfo2.restype = MallInfo2
    info = LIBC.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _publish(endpoint: Queue[str]) -> None:
    """A node's conflating publisher, in its own process (so that only the subscriber's memory
    is measured), sending in bursts as frames arrive after a busy moment."""
    ctx = zmq.Context()
    pub = bind_frame_publisher(ctx, "tcp://127.0.0.1:*", StreamOptions())
    endpoint.put(bound_endpoint(pub))
    jpeg = b"\xff\xd8" + bytes(range(256)) * (MESSAGE_BYTES // 256) + b"\xff\xd9"
    seq = 0
    while True:
        pub.send(encode_frame(FrameHeader("cam", seq, time.time_ns(), time.time_ns(), 64, 64), jpeg))
        seq += 1
        if seq % 64 == 0:
            time.sleep(0.001)  # pacing the bursts


def test_a_flooded_latest_subscriber_frees_every_message() -> None:
    if not hasattr(LIBC, "mallinfo2"):
        pytest.fail("this test reads the heap with glibc's mallinfo2 (glibc >= 2.33): run it on such a system")
    spawn = multiprocessing.get_context("spawn")
    endpoint: Queue[str] = spawn.Queue()
    publisher = spawn.Process(target=_publish, args=(endpoint,), daemon=True)
    publisher.start()
    ctx = zmq.Context()
    sub = connect_frame_subscriber(ctx, endpoint.get(timeout=60), StreamOptions())
    received, baseline = 0, 0
    deadline = time.monotonic() + 120
    try:
        while received < MESSAGES and time.monotonic() < deadline:
            if sub.poll(100):
                while sub.poll(0):  # FrameReceiver's drain: everything pending, keep the newest
                    decode(sub.recv(zmq.NOBLOCK, copy=False).buffer)
                    received += 1
            if not baseline and received >= 1000:  # the allocators have warmed up
                baseline = malloc_in_use()
    finally:
        publisher.kill()
        publisher.join(10)
        sub.close(0)  # every message it still held is freed; a leaked one is not
        ctx.destroy(0)
    assert received >= MESSAGES, f"only {received} messages in 120 s"
    # libzmq frees a closed socket's queue in its own thread, soon: the lowest reading of a
    # second's window is what stays.
    final, window_end = malloc_in_use(), time.monotonic() + 1
    while time.monotonic() < window_end:
        time.sleep(0.05)  # the measurement window's sampling interval
        final = min(final, malloc_in_use())
    grown = (final - baseline) / MESSAGE_BYTES
    # ZMQ_CONFLATE leaked 26 to 71 messages here (under pytest on 2 busy cores).
    assert grown < 4, f"malloc holds {grown:.0f} more messages than after the warm-up: leaked"


def test_latest_keeps_only_the_newest_and_polls_like_a_socket() -> None:
    with zmq.Context() as ctx:
        pub = bind_frame_publisher(ctx, "tcp://127.0.0.1:*", StreamOptions())
        sub = connect_frame_subscriber(ctx, bound_endpoint(pub), StreamOptions())
        assert isinstance(sub, LatestSocket)
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        sockets = {sub: "cam"}
        try:
            seq = 0
            while not sub.poll(10):  # the subscription reaches the publisher: send until one arrives
                pub.send(encode_frame(FrameHeader("cam", seq, 1, 1, 8, 8), b"\xff\xd8x\xff\xd9"))
                seq += 1
            for _ in range(50):
                seq += 1
                pub.send(encode_frame(FrameHeader("cam", seq, 1, 1, 8, 8), b"\xff\xd8x\xff\xd9"))
            deadline = time.monotonic() + 10
            newest = -1
            while newest < seq and time.monotonic() < deadline:
                for ready in dict(poller.poll(100)):
                    assert sockets[ready] == "cam"  # reported by its descriptor, found by it
                    frame = decode(sub.recv(zmq.NOBLOCK, copy=False).buffer)
                    newest = frame.header.seq  # type: ignore[union-attr]
            assert newest == seq
            assert sub.poll(0) == 0
            with pytest.raises(zmq.Again):
                sub.recv(zmq.NOBLOCK)
        finally:
            sub.close(0)
            pub.close(0)
        with pytest.raises(zmq.ZMQError):
            sub.recv()


def test_a_listener_keeps_the_newest_of_each_camera() -> None:
    with zmq.Context() as ctx:
        listener = bind_frame_listener(ctx, "tcp://127.0.0.1:*", StreamOptions())
        endpoint = listener.last_endpoint
        pubs = [bind_frame_publisher(ctx, "tcp://127.0.0.1:*", StreamOptions(), None) for _ in range(2)]
        try:
            for pub in pubs:
                pub.connect(endpoint)  # nodes behind NAT connect out to the listener
            seen: dict[str, int] = {}
            deadline = time.monotonic() + 10
            seq = 0
            while len(seen) < 2 and time.monotonic() < deadline:
                seq += 1
                for name, pub in zip(("a", "b"), pubs, strict=True):
                    pub.send(encode_frame(FrameHeader(name, seq, 1, 1, 8, 8), b"\xff\xd8x\xff\xd9"))
                time.sleep(0.01)  # pacing the senders
                while listener.poll(0):
                    frame = decode(listener.recv(zmq.NOBLOCK, copy=False).buffer)
                    seen[frame.header.camera] = frame.header.seq  # type: ignore[union-attr]
            assert set(seen) == {"a", "b"}
        finally:
            listener.close()
            for pub in pubs:
                pub.close(0)
