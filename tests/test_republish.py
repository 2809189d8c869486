"""Derived streams: endpoints follow the control endpoint; states map to the protocol's."""

from __future__ import annotations

import zmq

from framebus.common.protocol import FrameHeader
from framebus.worker_node.discovery import describe
from framebus.worker_node.republish import DerivedStreams, published_state, stream_endpoint
from framebus.worker_node.subscription import CameraStatus


def test_stream_endpoints_follow_the_control_endpoint() -> None:
    assert stream_endpoint("tcp://127.0.0.1:5575", 0) == "tcp://127.0.0.1:5576"
    assert stream_endpoint("tcp://0.0.0.0:5575", 2) == "tcp://0.0.0.0:5578"
    assert stream_endpoint("tcp://127.0.0.1:*", 3) == "tcp://127.0.0.1:*"
    assert stream_endpoint("ipc:///tmp/proc", 0) == "ipc:///tmp/proc-1"


def test_a_stale_source_is_published_as_reconnecting() -> None:
    assert published_state(CameraStatus("stale", "nothing received for 3.2 s")) == (
        "reconnecting",
        "source camera: nothing received for 3.2 s",
    )
    assert published_state(CameraStatus("source-error", "no such file")) == ("source-error", "no such file")


def test_derived_streams_are_described_like_cameras() -> None:
    ctx = zmq.Context()
    streams = DerivedStreams(ctx, "tcp://127.0.0.1:*", "proc-test")
    try:
        reply = describe(ctx, streams.endpoint, 5.0)
        assert reply.node == "proc-test" and reply.cameras == ()
        source = FrameHeader("cam1", 41, 123, 456, 4, 2)
        jpeg = b"\xff\xd8 not decoded here \xff\xd9"
        assert streams.publish("cam1/annotated", source, jpeg, (4, 2), {"results": {"n": 1}})
        (info,) = describe(ctx, streams.endpoint, 5.0).cameras
        assert (info.camera, info.state, info.width, info.height, info.delivery) == (
            "cam1/annotated", "streaming", 4, 2, "latest"
        )  # fmt: skip
        assert info.endpoint.startswith("tcp://127.0.0.1:") and info.endpoint != streams.endpoint
    finally:
        streams.close()
        ctx.destroy(0)
