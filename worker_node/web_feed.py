"""The web viewer's frames: a newest-frame slot per camera that any number of HTTP clients
wait on, fed from a ZeroMQ receiving thread.

Why a thread and not zmq.asyncio: FrameReceiver (discovery, staleness, stats, validation) is
the one subscription implementation every worker shares, and it is synchronous; running it in
its own thread reuses it whole and keeps receiving independent of HTTP writes. The hop into
the event loop is one call_soon_threadsafe per received frame (tens per second per camera).

Why a slot and not a queue: each client waits for a version newer than the one it sent last
and then takes whatever is newest, so a slow client skips frames instead of building a
backlog, and the JPEG bytes from the wire are shared by every client (no decode, no copy).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import zmq

from common.protocol import Frame
from common.redact import redact
from worker_node.access import Access
from worker_node.receiver import FrameReceiver
from worker_node.subscription import Subscription

log = logging.getLogger("worker_node.web")

STATS_EVERY_S = 1.0


@dataclass(frozen=True)
class CameraStats:
    """What /api/status reports for one camera (a snapshot taken in the receiving thread)."""

    state: str = "connecting"
    reason: str = ""
    fps: float = 0.0
    dropped: int = 0
    received: int = 0
    malformed: int = 0


@dataclass
class CameraFeed:
    camera: str
    stats: CameraStats = field(default_factory=CameraStats)
    frame: Frame | None = None
    version: int = 0
    clients: int = 0
    sent: int = 0  # frames written to stream clients, all clients together
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, frame: Frame) -> None:
        self.frame = frame
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()  # waiters hold the event that was set

    async def newer_than(self, version: int) -> tuple[int, Frame]:
        """The newest frame once its version is above `version`."""
        while self.version <= version or self.frame is None:
            await self._changed.wait()
        return self.version, self.frame

    def status(self) -> dict[str, object]:
        s, f = self.stats, self.frame
        age = (time.time_ns() - f.header.capture_ns) / 1e9 if f else None
        return {
            "camera": self.camera,
            "state": s.state,
            "reason": s.reason,
            "fps": round(s.fps, 1),
            "age_ms": round(age * 1000, 1) if age is not None else None,
            "dropped": s.dropped,
            "received": s.received,
            "malformed": s.malformed,
            "width": f.header.width if f else 0,
            "height": f.header.height if f else 0,
            "seq": f.header.seq if f else None,
            "clients": self.clients,
            "sent": self.sent,
        }


class FeedHub:
    """Per-camera feeds; touched only from the event loop."""

    def __init__(self) -> None:
        self.feeds: dict[str, CameraFeed] = {}

    def feed(self, camera: str) -> CameraFeed:
        found = self.feeds.get(camera)
        if found is None:
            found = self.feeds[camera] = CameraFeed(camera)
        return found

    def update(self, camera: str, stats: CameraStats, frame: Frame | None) -> None:
        feed = self.feed(camera)
        feed.stats = stats
        if frame is not None:
            feed.publish(frame)


def snapshot(sub: Subscription) -> CameraStats:
    s = sub.stats
    reason = redact(sub.status.reason)  # a node may be older than this worker
    return CameraStats(sub.status.state, reason, s.fps, s.dropped, s.received, s.malformed)


class ReceivingThread:
    """Runs FrameReceiver and hands frames and stats to the hub on the event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        hub: FeedHub,
        nodes: Sequence[str],
        cameras: Sequence[str],
        access: Access | None = None,
    ) -> None:
        self._access = access
        self._loop = loop
        self._hub = hub
        self._nodes = nodes
        self._cameras = cameras
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="receive", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        self._thread.join(2.0)
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        ctx = zmq.Context()
        receiver = FrameReceiver(ctx, self._nodes, self._cameras, wake_fd=self._wake_r.fileno(), access=self._access)
        next_stats = time.monotonic() + STATS_EVERY_S
        try:
            while not self._stop.is_set():
                for sub, frame in receiver.poll(max(0.0, next_stats - time.monotonic())):
                    self._hand_over(sub.name, snapshot(sub), frame)
                if time.monotonic() >= next_stats:
                    for sub in receiver.subscriptions.values():
                        sub.stats.roll_window()
                        self._hand_over(sub.name, snapshot(sub), None)
                    next_stats += STATS_EVERY_S
        except Exception:
            log.exception("receiving thread failed")
        finally:
            receiver.close()
            ctx.destroy(0)

    def _hand_over(self, camera: str, stats: CameraStats, frame: Frame | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._hub.update, camera, stats, frame)
        except RuntimeError:
            self._stop.set()  # the loop is closed: shutting down
