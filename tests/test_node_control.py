"""The worker's control socket to one node (worker_node/node_control.py): a describe reply with
invalid optional fields is kept, its cameras followed, and what was ignored is said in one line
(docs/protocol.md 4.1)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
import zmq

from framebus.common.protocol import DescribeReply, DescribeRequest, decode
from framebus.worker_node.node_control import NodeControl
from tests.support.wire import camera_entry, reply


def replies_to(node: NodeControl, answer: bytes, router: zmq.Socket) -> list[DescribeReply]:
    """Ask until the node has the request (the first may go before the connection is up), answer
    it, and read the replies."""
    deadline = time.monotonic() + 10
    while not router.poll(100):
        assert time.monotonic() < deadline, "the request never came"
        node.ask()
    identity, request = router.recv_multipart()
    assert isinstance(decode(request), DescribeRequest)
    router.send_multipart([identity, answer])
    while not node.socket.poll(100):
        assert time.monotonic() < deadline, "the reply never came"
    return node.read()


def test_invalid_optional_fields_are_ignored_in_one_line(
    bound: Callable[[int], tuple[zmq.Socket, str]], caplog: pytest.LogCaptureFixture
) -> None:
    router, endpoint = bound(zmq.ROUTER)  # the node's control socket, answered by the test
    ctx = zmq.Context()
    node = NodeControl(ctx, endpoint, None)
    cameras = [camera_entry(published_fps=float("nan"), reason="a\x1b[2Jb"), camera_entry("cam2")]
    try:
        with caplog.at_level(logging.WARNING):
            (got,) = replies_to(node, reply(cameras), router)
    finally:
        node.close()
        ctx.destroy(0)
    assert [c.camera for c in got.cameras] == ["cam1", "cam2"]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"node {endpoint}: invalid optional fields ignored, its cameras followed without them: "
        "describe reply: cameras[0]: field 'reason' contains non-printable characters; "
        "describe reply: cameras[0]: field 'published_fps'=nan is outside [0, 1000]"
    ]
