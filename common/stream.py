"""One published stream, a camera's or a derived one: what goes out on its frame socket, and
what it says when nothing does.

Shaped like aiortc's RTCRtpSender: the stream owns its sequence numbers, its last frame, its
status cadence and its describe entry; the frames (already encoded JPEG) and the socket come
from outside. A capture node's camera and a process worker's derived streams are both this.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol

from framebus.common.endpoint import Endpoint
from framebus.common.protocol import CameraInfo, Frame, FrameEncoder, FrameHeader, Status, encode_frame, encode_status
from framebus.common.publisher import FramePublisher
from framebus.common.words import Delivery, State

MAX_REASON = 500  # characters of a status reason
MAX_RETRY_S = 86400.0
_NO_META: Mapping[str, Any] = MappingProxyType({})
_NEVER = threading.Event()  # the stop flag of a caller that has none (conflated sends never wait)


def printable(text: str, limit: int = MAX_REASON) -> str:
    """Text fit for one log line or status reason: control characters become spaces."""
    return "".join(c if c.isprintable() else " " for c in text)[:limit]


class StreamTap(Protocol):
    """Something else that serves the stream's messages, e.g. the capture node's pull server."""

    def offer_frame(self, seq: int, message: bytes) -> None: ...

    def offer_status(self, message: bytes) -> None: ...

    def forget_frame(self) -> None: ...


class StreamPublisher:
    """Owned by one thread (its socket is not thread-safe); `info()` may be read from another."""

    def __init__(
        self, camera: str, socket: FramePublisher, status_interval: float, tap: StreamTap | None = None
    ) -> None:
        self.camera = camera
        self.endpoint = socket.endpoint
        self.delivery = Delivery.EVERY_FRAME if socket.every_frame else Delivery.LATEST
        self._socket = socket
        self._status_interval = status_interval
        self._tap = tap
        self._seq = 0
        # What describe shows, as last told: one tuple, replaced whole (info() reads it from
        # another thread without a lock; a lock per frame was measurable).
        self._described: tuple[tuple[int, int], State] = ((0, 0), State.CONNECTING)
        self._told = State.STREAMING  # a first status goes out at once unless a frame does
        self._encoder = FrameEncoder(camera)
        # The last frame sent, as (seq, capture_ns, publish_ns, size, meta, jpeg): made a Frame
        # only when asked (a status, a pull), not for each of the frames that nobody asks about.
        self._last: tuple[int, int, int, tuple[int, int], Mapping[str, Any], bytes | memoryview] | None = None
        self._last_frame: Frame | None = None
        self._last_sent = time.monotonic()

    @property
    def last_frame(self) -> Frame | None:
        if self._last_frame is None and self._last is not None:
            seq, capture_ns, publish_ns, (width, height), meta, jpeg = self._last
            header = FrameHeader(self.camera, seq, capture_ns, publish_ns, width, height, meta=meta)
            self._last_frame = Frame(header, memoryview(jpeg))
        return self._last_frame

    def quiet_for(self) -> float:
        """Seconds since the last frame or status went out."""
        return time.monotonic() - self._last_sent

    def status_wait(self) -> float:
        """How long the caller may wait for a frame before a status is due."""
        return max(0.0, self._status_interval - self.quiet_for())

    def status_due(self, state: State) -> bool:
        """A status goes out when the state changed, or nothing went out for the interval."""
        return state != self._told or self.quiet_for() >= self._status_interval

    def send_frame(
        self,
        jpeg: bytes | memoryview,
        size: tuple[int, int],
        capture_ns: int,
        stop: threading.Event | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> bool:
        """Send one frame with the next sequence number. False if it did not go out (stopped
        while every-frame delivery waited for a subscriber). Raises ProtocolError if `meta`
        cannot be encoded."""
        seq, publish_ns, meta = self._seq, time.time_ns(), meta or _NO_META
        if meta:
            message = encode_frame(FrameHeader(self.camera, seq, capture_ns, publish_ns, *size, meta=meta), jpeg)
        else:
            message = self._encoder.encode(seq, capture_ns, publish_ns, size, jpeg)
        if self._tap is not None:
            self._tap.offer_frame(seq, message)
        if not self._socket.send(message, stop or _NEVER):
            return False
        self._seq += 1
        if self._described != (size, State.STREAMING):
            self._described = (size, State.STREAMING)
        self._told = State.STREAMING
        self._last, self._last_frame = (seq, capture_ns, publish_ns, size, meta, jpeg), None
        self._last_sent = time.monotonic()
        return True

    def forget_frame(self) -> None:
        """Frames are not being sent (nobody watches): a status or pull request must not hand a
        newcomer the last one, which may be minutes old. Its sequence number is still said."""
        self._last, self._last_frame = None, None
        if self._tap is not None:
            self._tap.forget_frame()

    def send_status(self, state: State, reason: str = "", attempt: int = 0, retry_in_s: float = 0.0) -> None:
        """Say why no frame goes out. The last frame rides along under conflation, so that a
        status never displaces an unread frame; never with every-frame delivery (it was sent)."""
        last = self.last_frame
        status = Status(
            camera=self.camera,
            state=state,
            publish_ns=time.time_ns(),
            last_seq=self._seq - 1,  # the last frame's, as sent (-1: none yet)
            reason=printable(reason),
            attempt=attempt,
            retry_in_s=min(max(retry_in_s, 0.0), MAX_RETRY_S),
            frame=last if self.delivery == Delivery.LATEST else None,
        )
        message = encode_status(status)
        self._socket.try_send(message)
        if self._tap is not None:
            self._tap.offer_status(message)
        self._described = (self._described[0], state)
        self._told = state
        self._last_sent = time.monotonic()

    def info(self, fps: float = 0.0, reason: str = "") -> CameraInfo:
        """The stream's describe entry, as its last message told it."""
        (width, height), state = self._described
        return CameraInfo(self.camera, self.endpoint, width, height, fps, state, self.delivery, reason)

    def close(self) -> None:
        self._socket.close()


def endpoint_after(endpoint: Endpoint, offset: int, suffix: str) -> Endpoint | None:
    """Where a stream goes by default, after another endpoint: tcp port + offset ('*' stays any
    free port), or the ipc/inproc path + '-suffix'. None when the port would pass 65535."""
    if endpoint.scheme != "tcp":
        return Endpoint(endpoint.scheme, path=f"{endpoint.path}-{suffix}")
    if endpoint.port is None:
        return endpoint
    port = endpoint.port + offset
    return endpoint.with_port(port) if port <= 65535 else None
