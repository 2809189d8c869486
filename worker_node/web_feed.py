"""The web viewer's frames: a newest-frame slot per camera that any number of HTTP and wall
clients wait on, fed from a ZeroMQ receiving thread.

Why a thread and not zmq.asyncio: FrameReceiver (discovery, staleness, stats, validation) is
the one subscription implementation every worker shares, and it is synchronous; running it in
its own thread reuses it whole and keeps receiving independent of HTTP writes. The hop into
the event loop is one call_soon_threadsafe per batch: what arrives while a batch waits joins it.

Why a slot and not a queue: each client waits for a version newer than the one it sent last
and then takes whatever is newest, so a slow client skips frames instead of building a
backlog, and the JPEG bytes from the wire are shared by every client (no decode, no copy).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from framebus.common.protocol import Frame
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.redact import redact
from framebus.common.threads import WatchedThread
from framebus.common.words import State
from framebus.worker_node.access import Access
from framebus.worker_node.node_control import NodeHealth
from framebus.worker_node.sink import BaseSink, Driver, ReceiveOptions, ReceiverView
from framebus.worker_node.subscription import Subscription

log = logging.getLogger("worker_node.web")

STATS_EVERY_S = 1.0
MAX_FEEDS = 256  # cameras shown at once; each holds its newest frame


@dataclass(frozen=True)
class FeedSnapshot:
    """What /api/status reports for one camera (a snapshot taken in the receiving thread)."""

    state: str = State.CONNECTING
    reason: str = ""
    fps: float = 0.0
    dropped: int = 0
    received: int = 0
    malformed: int = 0


class FeedGoneError(Exception):
    """The camera is no longer described: its stream clients are ended."""


@dataclass
class CameraFeed:
    camera: str
    stats: FeedSnapshot = field(default_factory=FeedSnapshot)
    frame: Frame | None = None
    version: int = 0
    clients: int = 0  # stream clients and wall clients that want this camera
    sent: int = 0  # frames written to stream and wall clients, all clients together
    gone: bool = False
    watchers: set[asyncio.Event] = field(default_factory=set)  # wall clients, woken on every change
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, frame: Frame) -> None:
        self.frame = frame
        self.version += 1
        self._wake()

    def close(self) -> None:
        """The camera is gone: waiting clients end, and the last frame is let go."""
        self.gone, self.frame = True, None
        self._wake()

    def _wake(self) -> None:
        for watcher in self.watchers:
            watcher.set()
        self._changed.set()
        self._changed = asyncio.Event()  # waiters hold the event that was set

    async def newer_than(self, version: int) -> tuple[int, Frame]:
        """The newest frame once its version is above `version`; FeedGoneError once the camera is gone."""
        while self.version <= version or self.frame is None:
            if self.gone:
                raise FeedGoneError(self.camera)
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


@dataclass(frozen=True)
class Update:
    """What the receiving thread hands to the event loop in one go: the newest frame and stats
    per camera since the last hand-over, and (once a second) which cameras exist at all."""

    cameras: dict[str, tuple[FeedSnapshot | None, Frame | None]]
    present: frozenset[str] | None = None  # None: unchanged
    nodes: tuple[NodeHealth, ...] | None = None


class FeedHub:
    """Per-camera feeds; touched only from the event loop. Holds only the cameras the receiver
    follows now (a node that describes ever new ids cannot make it grow), at most MAX_FEEDS."""

    def __init__(self, max_feeds: int = MAX_FEEDS) -> None:
        self.feeds: dict[str, CameraFeed] = {}
        self.nodes: tuple[NodeHealth, ...] = ()
        self.failure = ""  # why the viewer stopped receiving (then it stops serving too)
        self._max_feeds = max_feeds
        self._full = RateLimitedLog(log, interval=60.0)

    def feed(self, camera: str) -> CameraFeed | None:
        found = self.feeds.get(camera)
        if found is None:
            if len(self.feeds) >= self._max_feeds:
                self._full.warning(
                    "full",
                    "%d cameras shown already: camera %s is not (see --camera to choose)",
                    self._max_feeds,
                    camera,
                )
                return None
            found = self.feeds[camera] = CameraFeed(camera)
        return found

    def status(self) -> dict[str, object]:
        """What /api/status serves and the wall pushes once a second."""
        return {
            "cameras": [self.feeds[name].status() for name in sorted(self.feeds)],
            "nodes": [
                {"node": n.node, "answering": n.answering, "problem": n.problem, "silent_s": round(n.silent_s, 1)}
                for n in self.nodes
            ],
        }

    def update(self, camera: str, stats: FeedSnapshot | None, frame: Frame | None) -> None:
        feed = self.feed(camera)
        if feed is None:
            return
        if stats is not None:
            feed.stats = stats
        if frame is not None:
            feed.publish(frame)

    def apply(self, update: Update) -> None:
        if update.present is not None:
            for camera in [c for c in self.feeds if c not in update.present]:
                self.feeds.pop(camera).close()
        for camera, (stats, frame) in update.cameras.items():
            if update.present is None or camera in update.present:
                self.update(camera, stats, frame)
        if update.nodes is not None:
            self.nodes = update.nodes


def snapshot(sub: Subscription) -> FeedSnapshot:
    s = sub.stats
    reason = redact(sub.status.reason)  # a node may be older than this worker
    return FeedSnapshot(sub.status.state, reason, s.fps, s.dropped, s.received, s.malformed)


class Handover(BaseSink):
    """A sink (worker_node.sink) in the receiving thread that hands frames and stats to the hub
    on the event loop, coalesced: whatever arrives while the loop is busy replaces what is
    waiting (newest frame per camera), so the hand-over holds at most one frame per camera
    however slow the loop is."""

    cadence = STATS_EVERY_S

    def __init__(self, post: Callable[[Callable[[], None]], None], hub: FeedHub) -> None:
        self._post = post
        self._hub = hub
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[FeedSnapshot | None, Frame | None]] = {}
        self._present: frozenset[str] | None = None
        self._node_health: tuple[NodeHealth, ...] | None = None
        self._scheduled = False

    def start(self, receiver: ReceiverView) -> None:
        self.on_tick(receiver)  # which cameras and nodes there are, at once

    def on_frame(self, sub: Subscription, frame: Frame) -> None:
        with self._lock:
            self._pending[sub.name] = (snapshot(sub), frame)
        self._schedule()

    def on_tick(self, receiver: ReceiverView) -> None:
        with self._lock:
            for sub in receiver.subscriptions.values():
                _, waiting = self._pending.get(sub.name, (None, None))
                self._pending[sub.name] = (snapshot(sub), waiting)
            self._present = frozenset(receiver.subscriptions)
            self._node_health = tuple(receiver.node_health())
        self._schedule()

    def _schedule(self) -> None:
        with self._lock:
            if self._scheduled or not (self._pending or self._present is not None):
                return
            self._scheduled = True
        self._post(self._deliver)

    def _deliver(self) -> None:
        """On the event loop: everything that arrived since the last delivery, in one go."""
        with self._lock:
            update = Update(self._pending, self._present, self._node_health)
            self._pending, self._present, self._node_health = {}, None, None
            self._scheduled = False
        self._hub.apply(update)


class ReceivingThread:
    """Runs the receiver (a sink Driver) in a thread of its own, feeding the hub through a
    Handover. If the thread dies, `on_death` gets the reason (the viewer then stops: no stale page)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        hub: FeedHub,
        nodes: Sequence[str],
        cameras: Sequence[str],
        access: Access | None = None,
        on_death: Callable[[str], None] | None = None,
    ) -> None:
        self._loop = loop
        options = ReceiveOptions(nodes, cameras, access=access or Access())
        self.driver = Driver([Handover(self._post, hub)], options, window_s=STATS_EVERY_S)

        def died(reason: str) -> None:
            self._post(lambda: on_death(reason) if on_death else None)

        self._thread = WatchedThread(self.driver.run, "receive", on_death=died)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.driver.stop()
        self._thread.join(2.0)

    def _post(self, callback: Callable[[], None]) -> None:
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:
            self.driver.stop()  # the loop is closed: shutting down
