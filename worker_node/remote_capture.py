"""`RemoteCapture`: cv2.VideoCapture's reading API for a framebus camera.

    cap = RemoteCapture("tcp://edge1:5555", camera="cam1")   # was: cv2.VideoCapture(url)
    while True:
        ok, frame = cap.read()                                  # newest frame, BGR

Each read returns the newest frame not returned before, so a slow script never works on a
backlog: it skips to the present.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
import zmq

from framebus.common import jpeg
from framebus.common.endpoint import EndpointError, parse_endpoint, parse_host
from framebus.common.protocol import CameraInfo, Frame, FrameHeader
from framebus.common.words import Delivery, State
from framebus.worker_node.access import Access
from framebus.worker_node.discovery import DiscoveryError, describe
from framebus.worker_node.follow import FollowPolicy
from framebus.worker_node.pixel_limit import PixelLimit
from framebus.worker_node.subscription import STALE_AFTER_S, CameraStatus, Subscription

log = logging.getLogger("worker_node.remote_capture")


class RemoteCapture:
    """`source` is a capture node's describe endpoint together with `camera`, or a camera's
    frame endpoint alone. Like cv2.VideoCapture, a failure to open does not raise: check
    isOpened() (and `error` for the reason). `pull=True` (with a node and camera) asks for
    each frame instead of subscribing: the freshest frames over links slower than the stream.
    A node's camera is followed only on the host the node was reached at, or on `follow_hosts`
    (see docs/security.md)."""

    def __init__(
        self,
        source: str,
        camera: str | None = None,
        timeout: float = 5.0,
        pull: bool = False,
        key: str | Path | None = None,
        server_key: str | Path | None = None,
        follow_hosts: Sequence[str] = (),
        max_pixels: int | None = None,
    ) -> None:
        """`key` (this script's .key_secret file) and `server_key` (the node's .key file) for a
        node that uses CURVE; a wrong or missing file raises KeyFileError. `max_pixels`: read()
        refuses bigger pictures before decoding them (default: the camera's described size with
        a margin, see worker_node.pixel_limit)."""
        self.timeout = timeout
        self.error = ""
        self._source = source
        self._camera = camera
        self._waiting_said = False
        security = Access.from_files(key, [server_key] if server_key else []).client()
        self._ctx = zmq.Context()
        self._sub: Subscription | None = None
        self._described_fps = 0.0
        self._info: CameraInfo | None = None
        self._pixels = PixelLimit(max_pixels)
        self._pending: Frame | None = None
        self.last: FrameHeader | None = None
        endpoint, every_frame = source, False
        try:
            parse_endpoint(source, "source")
            follow_hosts = [parse_host(host, "follow host") for host in follow_hosts]
        except EndpointError as exc:
            self._fail(str(exc))
            return
        if camera is not None:
            try:
                reply = describe(self._ctx, source, timeout, security)
            except DiscoveryError as exc:
                self._fail(str(exc))
                return
            match = [c for c in reply.cameras if c.camera == camera]
            if not match:
                known = ", ".join(c.camera for c in reply.cameras) or "none"
                self._fail(f"node {source} has no camera {camera!r} (it has: {known})")
                return
            endpoint, every_frame = match[0].endpoint, match[0].delivery == Delivery.EVERY_FRAME
            self._info = match[0]
            self._described_fps = match[0].fps
            if pull and not match[0].pull_endpoint:
                self._fail(f"camera {camera!r} on {source} offers no pull endpoint")
                return
            if pull:
                endpoint = match[0].pull_endpoint
            refused = FollowPolicy(follow_hosts).refusal(source, endpoint, wait_s=timeout)
            if refused:
                self._fail(f"node {source} describes camera {camera!r} at {endpoint}: not followed: {refused}")
                return
        elif pull:
            self._fail("pull mode needs a node endpoint and a camera id")
            return
        try:
            self._sub = Subscription(self._ctx, endpoint, camera, every_frame, pull, security=security)
        except zmq.ZMQError as exc:
            self._fail(f"cannot connect to {endpoint}: {exc}")

    def _fail(self, reason: str) -> None:
        self.error = reason
        log.warning("RemoteCapture: %s", reason)

    # ------------------------------------------------------------------ reading

    def grab(self) -> bool:
        """Wait (up to timeout) for the newest frame not returned before; keep it for retrieve()."""
        if self._sub is None:
            return False
        sub = self._sub
        poller = zmq.Poller()
        poller.register(sub.socket, zmq.POLLIN)
        if sub.link_socket is not None:  # pull mode: a lost request is sent again on reconnection
            poller.register(sub.link_socket, zmq.POLLIN)
        deadline = time.monotonic() + self.timeout
        while True:
            frame = sub.newest()
            if frame is not None:
                self._pending = frame
                self.last = frame.header
                if self._waiting_said:  # it was a frame endpoint after all, just slow to start
                    self.error, self._waiting_said = "", False
                return True
            sub.request()  # pull mode: we are ready for the next frame
            remaining = deadline - time.monotonic()
            if sub.awaiting_connection:
                remaining = min(remaining, 0.1)  # the request could not go out yet: retry soon
            ready = dict(poller.poll(max(0, int(remaining * 1000)) + 1))
            if sub.link_socket is not None and sub.link_socket in ready:
                sub.on_link_events()
            if not ready and time.monotonic() >= deadline:
                self._no_frame_yet()
                return False

    def _no_frame_yet(self) -> None:
        """A frame endpoint that never sent a frame is most often a node's describe endpoint
        given without camera=: say so once, instead of (False, None) for ever without a word."""
        if self.last is not None or self.error or self._camera is not None:
            return
        self._waiting_said = True
        self.error = (
            f"no frame from {self._source} within {self.timeout:.1f} s: if it is a capture node's "
            "describe endpoint, give camera=ID (worker-node describe lists them)"
        )
        log.warning("RemoteCapture: %s", self.error)

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        if self._pending is None or self._sub is None:
            return False, None
        try:
            return True, self._pixels.decode_bgr(self._sub.name, self._pending.jpeg, self._info, self._sub.stats)
        except jpeg.JpegTooLargeError:
            return False, None  # counted and logged
        except jpeg.JpegError as exc:
            log.warning("camera %s: %s", self._sub.name if self._sub else "?", exc)
            return False, None

    def read(self) -> tuple[bool, np.ndarray | None]:
        """(True, BGR frame) or (False, None) when nothing new came within the timeout."""
        if not self.grab():
            return False, None
        return self.retrieve()

    def read_jpeg(self) -> tuple[bool, bytes | None]:
        """The frame as the JPEG bytes from the wire: no decode (to save or forward it)."""
        if not self.grab() or self._pending is None:
            return False, None
        return True, bytes(self._pending.jpeg)

    # ------------------------------------------------------------------ state

    @property
    def age(self) -> float:
        """Seconds since the last returned frame was captured (clock skew between hosts shows here)."""
        return time.time() - self.last.capture_ns / 1e9 if self.last else float("nan")

    @property
    def status(self) -> CameraStatus:
        if self._sub is None:
            return CameraStatus(State.SOURCE_ERROR, self.error)
        self._sub.mark_stale_if_silent(STALE_AFTER_S)
        return self._sub.status

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return self._sub is not None

    def get(self, prop: int) -> float:
        """CAP_PROP_FRAME_WIDTH/HEIGHT, CAP_PROP_FPS, CAP_PROP_POS_FRAMES (the last sequence
        number); 0.0 for anything else, as cv2.VideoCapture does."""
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return float(self.last.width) if self.last else 0.0
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(self.last.height) if self.last else 0.0
        if prop == cv2.CAP_PROP_FPS:
            return self._described_fps or (self._sub.stats.fps if self._sub else 0.0)
        if prop == cv2.CAP_PROP_POS_FRAMES:
            return float(self.last.seq) if self.last else 0.0
        return 0.0

    def release(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        self._ctx.term()

    def __enter__(self) -> RemoteCapture:
        return self

    def __exit__(self, *_exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.release()

    def __iter__(self) -> Iterator[np.ndarray]:
        """Frames until one does not come within the timeout (or after release())."""
        while self.isOpened():
            ok, frame = self.read()
            if not ok or frame is None:
                return
            yield frame
