"""A worker that listens (capture nodes behind NAT connect out to it) hears many cameras on one
socket. Each poll must hand over the newest frame of *each* camera pending: it handed over only
the newest message of all, and every other camera's frame of that round was lost."""

from __future__ import annotations

import zmq

from framebus.common.protocol import FrameHeader, encode_frame
from framebus.common.sockets import StreamOptions, bind_frame_publisher
from framebus.worker_node.receiver import FrameReceiver
from tests.support.processes import wait_until

JPEG = b"\xff\xd8x\xff\xd9"


def test_one_poll_hands_over_the_newest_frame_of_each_camera() -> None:
    ctx = zmq.Context()
    receiver = FrameReceiver(ctx, [], listen=["tcp://127.0.0.1:*"])
    try:
        (listening,) = receiver.subscriptions.values()
        endpoint = listening.socket.last_endpoint
        pubs = {name: bind_frame_publisher(ctx, "tcp://127.0.0.1:*", StreamOptions(), None) for name in "abc"}
        for pub in pubs.values():
            pub.connect(endpoint)
        got: dict[str, int] = {}
        seq = 0

        def all_three_in_one_poll() -> bool:
            """Hand over what the previous rounds left pending (the pump keeps the newest of
            each camera until it is read), then send a round: PUB drops what it sends before
            the connections are up, so rounds go on until one poll sees all three cameras."""
            nonlocal seq
            got.clear()
            got.update({frame.header.camera: frame.header.seq for _, frame in receiver.poll(0)})
            seq += 1
            for name, pub in pubs.items():
                pub.send(encode_frame(FrameHeader(name, seq, 1, 1, 8, 8), JPEG))
            return len(got) == 3

        wait_until(all_three_in_one_poll, 15, "the three cameras' frames handed over by one poll")
        for pub in pubs.values():
            pub.close(0)
    finally:
        receiver.close()
        ctx.destroy(0)
