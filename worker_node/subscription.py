"""One camera stream as the worker sees it: one SUB socket, validated messages, statistics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import zmq

from framebus.common.latest import LatestSocket
from framebus.common.protocol import Frame, PoolResult, ProtocolError, Status, decode, encode_pull_request
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.security import CurveClient
from framebus.common.sockets import (
    DEFAULT_MAX_MESSAGE_BYTES,
    StreamOptions,
    bind_frame_listener,
    connect_frame_subscriber,
    connect_pull_client,
)
from framebus.common.words import State
from framebus.worker_node.link import LinkMonitor
from framebus.worker_node.stats import ReceiveStats

log = logging.getLogger("worker_node.subscription")
STALE_AFTER_S = 3.0
MAX_READS = 64  # messages read from one stream at a time: a flooding peer cannot starve the others
# The worker's own word for a camera it has heard nothing from for STALE_AFTER_S: not one of the
# protocol's states (common.words.State), which only a capture node reports.
STALE = "stale"
REQUEST_RETRY_S = 2.0
_bad = RateLimitedLog(log)


@dataclass(frozen=True)
class CameraStatus:
    state: str  # a common.words.State from the capture node, or this worker's own STALE
    reason: str = ""
    attempt: int = 0
    retry_in_s: float = 0.0


class Subscription:
    """Receives one camera. `camera` is the id expected on the wire (None: accept the first
    seen, for a bare frame endpoint). With `pull`, `endpoint` is the camera's pull endpoint
    and frames come only when asked for with request(): for links slower than the stream.
    With `pool` too, this worker is a member of that pool: each frame it is handed is its own
    (no other member gets it), and hand_back() returns what it made of it with the next request.
    `member`: the worker's token, the same on all its cameras, so that a node hands it one frame
    at a time across them, the camera whose turn it is (docs/protocol.md 3.6). `pump`: see
    common.sockets.StreamOptions."""

    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        camera: str | None = None,
        every_frame: bool = False,
        pull: bool = False,
        listen: bool = False,
        security: CurveClient | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        pool: str = "",
        member: str = "",
        pump: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.pool = pool if pull else ""
        self._member = member if self.pool else ""
        self._held: int | None = None  # pool: the seq of the frame handed to us, until handed back
        self._result: PoolResult | None = None  # pool: goes out with the next request
        self.camera = camera
        self.every_frame = every_frame and not pull
        self.pull = pull
        self.listen = listen  # bound: capture nodes connect to us, any number of cameras
        options = StreamOptions(every_frame=every_frame, max_message_bytes=max_message_bytes, pump=pump)
        # Pull mode: a request lost with its connection is sent again as soon as a new one is up
        # (the link monitor tells), not after REQUEST_RETRY_S.
        self.link: LinkMonitor | None = None

        def open_socket() -> zmq.Socket | LatestSocket:
            if pull:
                self.link = LinkMonitor(ctx, secure=security is not None)
                try:
                    return connect_pull_client(ctx, endpoint, max_message_bytes, security, self.link.attach)
                except zmq.ZMQError:
                    self.link.close()
                    raise
            if listen:
                return bind_frame_listener(ctx, endpoint, options, security)
            return connect_frame_subscriber(ctx, endpoint, options, security)

        self._open_socket = open_socket
        self.socket = open_socket()
        self.stats = ReceiveStats()
        self.status = CameraStatus(State.CONNECTING)
        self._last: dict[str, tuple[int, int]] = {}  # camera -> (seq, publish_ns) of its last frame
        # A listener: camera -> what its node last said of it, and when (a relay serves each its own)
        self.heard: dict[str, tuple[CameraStatus, float]] = {}
        self._asked_at: float | None = None  # pull mode: when the outstanding request went out

    @property
    def link_socket(self) -> zmq.Socket | None:
        """Pull mode: the link monitor's socket, to poll next to `socket`."""
        return self.link.socket if self.link is not None else None

    def on_link_events(self) -> None:
        """Pull mode: a request outstanding on a connection that went down is lost with it; ask
        again the moment a new connection is up."""
        if self.link is None:
            return
        for event in self.link.read():
            if event == zmq.EVENT_DISCONNECTED:
                log.debug("camera %s: pull connection lost", self.name)
                self._asked_at = None
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._asked_at = None
                self.request()
                log.debug(
                    "camera %s: pull connection up, request %s", self.name, "sent" if self._asked_at else "not sent"
                )

    @property
    def awaiting_connection(self) -> bool:
        """Pull mode: no request is out because the node is not connected (yet)."""
        return self.pull and self._asked_at is None

    def request(self) -> None:
        """Pull mode: ask for the newest frame, unless a request is still outstanding (the
        credit of one). A request unanswered for REQUEST_RETRY_S is sent again: the node
        may have restarted and forgotten it."""
        now = time.monotonic()
        if not self.pull or (self._asked_at is not None and now - self._asked_at < REQUEST_RETRY_S):
            return
        if self._held is not None:
            return  # a pool member asks when it hands back the frame it holds
        try:
            last_seq = self._last.get(self.camera or "", (-1, 0))[0]
            self.socket.send(encode_pull_request(last_seq, self.pool, self._result, self._member), zmq.NOBLOCK)
            self._asked_at = now
            self._result = None  # sent once: lost with its connection, it is one frame's result
        except zmq.Again:
            pass  # not connected (yet): asked again on the next call

    def hand_back(self, seq: int, result: PoolResult | None) -> None:
        """Pool member: done with frame `seq`; `result` (None: nothing to publish) goes to the
        node with the next request, which this releases."""
        if seq == self._held:
            self._held = None
            self._result = result

    @property
    def name(self) -> str:
        return self.camera or self.endpoint

    def receive(self) -> Frame | None:
        """Handle one pending message (never blocks); a new frame, or None (status, duplicate,
        malformed, or nothing pending)."""
        try:
            message = self.socket.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        try:
            decoded = decode(message.buffer)
        except ProtocolError as exc:
            return self._malformed(str(exc))
        except Exception as exc:  # the contract is ProtocolError only: a decoder bug must not kill the worker
            return self._malformed(f"it broke the decoder ({type(exc).__name__}: {str(exc)[:200]}); please report this")
        if not isinstance(decoded, (Frame, Status)):
            return self._malformed(f"a {type(decoded).__name__} on a frame stream")
        if self.stats.stale_since is not None:
            self.stats.stale_total += time.monotonic() - self.stats.stale_since
            self.stats.stale_since = None
        self._asked_at = None  # the request is answered: the credit is back
        wire_camera = decoded.header.camera if isinstance(decoded, Frame) else decoded.camera
        if self.camera is None and not self.listen:
            self.camera = wire_camera
        if wire_camera != self.camera and not self.listen:
            return self._malformed(f"camera id {wire_camera!r} on the stream of {self.camera!r}")
        if isinstance(decoded, Status):
            self.stats.last_message = time.monotonic()
            self.status = CameraStatus(decoded.state, decoded.reason, decoded.attempt, decoded.retry_in_s)
            self._heard(wire_camera, self.status)
            # A status carries the last frame so that it never displaces an unread one; to a pool
            # member it is no work: that frame may be another member's.
            return self._accept(decoded.frame) if decoded.frame is not None and not self.pool else None
        if self.status.state == STALE:
            log.info("camera %s: receiving again", self.name)
        self.status = CameraStatus(State.STREAMING)
        self._heard(wire_camera, self.status)
        accepted = self._accept(decoded)
        if accepted is not None and self.pool:
            self._held = accepted.header.seq  # ours alone: no request until it is handed back
        return accepted

    def pending(self) -> list[Frame]:
        """Everything pending on a conflated stream: its newest frame, or a listener's newest
        frame of each camera (capture nodes behind NAT share one listening socket); the next
        frame of an every-frame stream. At most MAX_READS messages (statuses too), so that it
        always returns."""
        newest: dict[str, Frame] = {}
        for _ in range(MAX_READS):
            if not self.socket.poll(0, zmq.POLLIN):
                break
            frame = self.receive()
            if frame is not None:
                newest[frame.header.camera if self.listen else ""] = frame
                if self.every_frame:
                    break
        return list(newest.values())

    def newest(self) -> Frame | None:
        """The newest frame pending on a one-camera stream (RemoteCapture's read)."""
        frames = self.pending()
        return frames[-1] if frames else None

    def reopen(self) -> None:
        """A new socket to the same endpoint, statistics kept. ZeroMQ gives up on a connection
        the node refused (CURVE key not allowed, yet): this tries again."""
        self.close()
        self.socket = self._open_socket()
        self._asked_at = None
        self._held = None

    def mark_stale_if_silent(self, after_s: float) -> bool:
        """A camera that sends nothing (not even status) for after_s is stale: the node, the
        link or the camera is gone. True when this call made it stale. A pool member with a
        token waits its turn across the node's cameras, seconds with many of them: while its
        connection is up (ZeroMQ heartbeats), silence is that wait, and a status would come if
        the camera stopped."""
        silent = self.stats.silent_for()
        if self._member and self.link is not None and self.link.state.up:
            return False
        if silent > after_s and self.status.state != STALE:
            self.status = CameraStatus(STALE, f"nothing received for {silent:.1f} s")
            self.stats.stale_since = time.monotonic()
            return True
        return False

    def _heard(self, camera: str, status: CameraStatus) -> None:
        if self.listen:
            if camera not in self.heard and len(self.heard) >= 1024:
                self.heard.clear()  # as _last: many cameras, bounded memory
            self.heard[camera] = (status, time.monotonic())

    def _accept(self, frame: Frame) -> Frame | None:
        h = frame.header
        last = self._last.get(h.camera)
        if last is not None:
            last_seq, last_publish_ns = last
            if h.seq == last_seq and h.publish_ns == last_publish_ns:
                return None  # the same frame again, riding on a status message
            self.stats.follow(last_seq, h.seq)
        elif len(self._last) >= 1024:
            self._last.clear()  # a listener hears from many cameras; bound the memory
        self._last[h.camera] = (h.seq, h.publish_ns)
        self.stats.frame(h.capture_ns)
        return frame

    def _malformed(self, problem: str) -> Frame | None:
        self.stats.malformed += 1
        _bad.warning(f"malformed-{self.endpoint}", "stream %s: dropped a malformed message: %s", self.endpoint, problem)
        return None

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None
        self.socket.close(0)
