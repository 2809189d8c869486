"""Derived streams: what a process worker publishes, exactly as a capture node publishes a camera.

One conflated PUB socket per derived stream (`cam1/annotated`) and a control endpoint that
answers describe, so any worker (save, display, web, another process worker) finds and reads a
derived stream the way it reads a camera: that is what lets pipelines span machines. Frames
keep the source frame's capture time, so the age a downstream worker shows is end to end.
When no frame went out for a while (the handler is slow, or the source camera is down), the
stream carries a status message with the source camera's state, like a capture node does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import zmq

from framebus.common.control import ControlServer
from framebus.common.endpoint import SCHEMES, parse_endpoint
from framebus.common.protocol import STATES, CameraInfo, FrameHeader, ProtocolError
from framebus.common.publisher import FramePublisher
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.security import CurveServer
from framebus.common.sockets import StreamOptions
from framebus.common.stream import StreamPublisher, endpoint_after
from framebus.common.words import State
from framebus.worker_node.subscription import CameraStatus

log = logging.getLogger("worker_node.republish")

DEFAULT_CONTROL = "tcp://127.0.0.1:5575"
STATUS_INTERVAL_S = 1.0


def stream_endpoint(control: str, index: int) -> str:
    """Derived streams follow the control endpoint: port + 1 + index, or any free port for '*'
    (and past 65535). `control` was checked by ProcessOptions."""
    parsed = parse_endpoint(control, "control", bind=True, schemes=SCHEMES)
    placed = endpoint_after(parsed, 1 + index, str(index + 1))
    return str(placed or parsed.with_port(None))


def published_state(upstream: CameraStatus) -> tuple[State, str]:
    """The protocol's states for the source camera's state (the worker's own 'stale' is not one)."""
    if upstream.state not in STATES:  # the worker's own "stale"
        return State.RECONNECTING, f"source camera: {upstream.reason}"
    return State(upstream.state), upstream.reason


class DerivedStreams:
    """Owned by the processing thread (publishers are single-thread); describe is answered
    from the control thread (StreamPublisher.info is thread-safe)."""

    def __init__(self, ctx: zmq.Context, control: str, node_name: str, security: CurveServer | None = None) -> None:
        self._ctx = ctx
        self._security = security
        self._requested = control
        self._lock = threading.Lock()
        self._streams: dict[str, StreamPublisher] = {}
        self._log = RateLimitedLog(log)
        self._control = ControlServer(ctx, control, node_name, self.infos, security)
        self.endpoint = self._control.endpoint
        self._control.start()

    def infos(self) -> list[CameraInfo]:
        with self._lock:
            streams = list(self._streams.values())
        return [s.info() for s in streams]

    def stream(self, camera: str) -> StreamPublisher:
        """The derived stream `camera`, bound on first use (its endpoint is logged)."""
        found = self._streams.get(camera)
        if found is not None:
            return found
        endpoint = stream_endpoint(self._requested, len(self._streams))
        socket = FramePublisher(self._ctx, endpoint, StreamOptions(), security=self._security)
        created = StreamPublisher(camera, socket, STATUS_INTERVAL_S)
        with self._lock:
            self._streams[camera] = created
        log.info("stream %s: frames on %s", camera, created.endpoint)
        return created

    def publish(
        self, camera: str, source: FrameHeader, jpeg: bytes | memoryview, size: tuple[int, int], meta: Mapping[str, Any]
    ) -> bool:
        """One derived frame, with the source frame's capture time; False (logged) if its header
        cannot be encoded."""
        try:
            return self.stream(camera).send_frame(jpeg, size, source.capture_ns, meta=meta)  # conflated: never waits
        except ProtocolError as exc:
            self._log.warning(f"encode-{camera}", "stream %s: frame not published: %s", camera, exc)
            return False

    def send_status(self, camera: str, upstream: CameraStatus) -> None:
        """A status message when the state changed or nothing went out for STATUS_INTERVAL_S."""
        s = self.stream(camera)
        state, reason = published_state(upstream)
        if state == State.STREAMING:  # the camera streams, the handler has not said anything lately
            state, reason = (
                (State.STREAMING, f"no output from the handler for {s.quiet_for():.1f} s")
                if s.last_frame
                else (State.CONNECTING, "waiting for the handler's first output")
            )
        if s.status_due(state):
            s.send_status(state, reason, upstream.attempt, upstream.retry_in_s)

    def close(self) -> None:
        self._control.stop()
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for s in streams:
            s.close()
