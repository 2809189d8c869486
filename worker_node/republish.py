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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zmq

from common.control import ControlServer
from common.endpoint import SCHEMES, parse_endpoint
from common.protocol import CameraInfo, Frame, FrameHeader, ProtocolError, Status, encode_frame, encode_status
from common.publisher import FramePublisher
from common.ratelimit import RateLimitedLog
from common.security import CurveServer
from common.sockets import StreamOptions
from worker_node.subscription import CameraStatus

log = logging.getLogger("worker_node.republish")

DEFAULT_CONTROL = "tcp://127.0.0.1:5575"
STATUS_INTERVAL_S = 1.0


def stream_endpoint(control: str, index: int) -> str:
    """Derived streams follow the control endpoint: port + 1 + index, or any free port for '*'
    (and past 65535). `control` was checked by ProcessOptions."""
    parsed = parse_endpoint(control, "control", bind=True, schemes=SCHEMES)
    if parsed.scheme != "tcp":
        return f"{control}-{index + 1}"  # ipc:// and inproc:// names
    port = None if parsed.port is None else parsed.port + 1 + index
    return str(parsed.with_port(port if port is not None and port <= 65535 else None))


def published_state(upstream: CameraStatus) -> tuple[str, str]:
    """The protocol's states for the source camera's state (the worker's own 'stale' is not one)."""
    if upstream.state == "stale":
        return "reconnecting", f"source camera: {upstream.reason}"
    return upstream.state, upstream.reason


@dataclass
class _Stream:
    camera: str
    publisher: FramePublisher
    seq: int = 0
    width: int = 0
    height: int = 0
    last_sent: float = 0.0
    last_frame: Frame | None = None
    state: str = "connecting"


class DerivedStreams:
    """Owned by the processing thread (publishers are single-thread); describe is answered
    from the control thread, which reads under a lock."""

    def __init__(self, ctx: zmq.Context, control: str, node_name: str, security: CurveServer | None = None) -> None:
        self._ctx = ctx
        self._security = security
        self._requested = control
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._log = RateLimitedLog(log)
        self._control = ControlServer(ctx, control, node_name, self.infos, security)
        self.endpoint = self._control.endpoint
        self._control.start()

    def infos(self) -> list[CameraInfo]:
        with self._lock:
            return [
                CameraInfo(s.camera, s.publisher.endpoint, s.width, s.height, 0.0, s.state, "latest")
                for s in self._streams.values()
            ]

    def stream(self, camera: str) -> _Stream:
        """The derived stream `camera`, bound on first use (its endpoint is logged)."""
        found = self._streams.get(camera)
        if found is not None:
            return found
        endpoint = stream_endpoint(self._requested, len(self._streams))
        publisher = FramePublisher(self._ctx, endpoint, StreamOptions(), security=self._security)
        created = _Stream(camera, publisher)
        with self._lock:
            self._streams[camera] = created
        log.info("stream %s: frames on %s", camera, publisher.endpoint)
        return created

    def publish(
        self, camera: str, source: FrameHeader, jpeg: bytes | memoryview, size: tuple[int, int], meta: Mapping[str, Any]
    ) -> bool:
        """One derived frame; False (logged) if its header cannot be encoded."""
        s = self.stream(camera)
        header = FrameHeader(camera, s.seq, source.capture_ns, time.time_ns(), size[0], size[1], meta=meta)
        try:
            message = encode_frame(header, jpeg)
        except ProtocolError as exc:
            self._log.warning(f"encode-{camera}", "stream %s: frame not published: %s", camera, exc)
            return False
        s.publisher.send(message, threading.Event())  # conflated PUB: never waits
        with self._lock:
            s.seq += 1
            s.width, s.height, s.state = size[0], size[1], "streaming"
        s.last_sent = time.monotonic()
        s.last_frame = Frame(header, memoryview(jpeg))
        return True

    def send_status(self, camera: str, upstream: CameraStatus) -> None:
        """A status message if nothing went out for STATUS_INTERVAL_S; carries the last frame."""
        s = self.stream(camera)
        if time.monotonic() - s.last_sent < STATUS_INTERVAL_S:
            return
        state, reason = published_state(upstream)
        last = s.last_frame
        if state == "streaming":
            quiet = time.monotonic() - s.last_sent if last else 0.0
            state, reason = (
                ("streaming", f"no output from the handler for {quiet:.1f} s")
                if last
                else ("connecting", "waiting for the handler's first output")
            )
        status = Status(
            camera=camera,
            state=state,
            publish_ns=time.time_ns(),
            last_seq=last.header.seq if last else -1,
            reason="".join(c if c.isprintable() else " " for c in reason)[:500],
            attempt=upstream.attempt,
            retry_in_s=min(max(upstream.retry_in_s, 0.0), 86400.0),
            frame=last,
        )
        s.publisher.try_send(encode_status(status))
        with self._lock:
            s.state = state
        s.last_sent = time.monotonic()

    def close(self) -> None:
        self._control.stop()
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for s in streams:
            s.publisher.close()
