"""One upstream node's cameras, served again by the relay: a Sink that one Driver feeds.

Each camera the node describes (or, for a node that connects out to the relay, sends) becomes
`<node name>/<camera id>` here, on a conflated PUB socket and a pull endpoint of its own, exactly
as a capture node serves a camera (common.stream.StreamPublisher, common.pull_server's
PullServer). A frame goes out as it came: the JPEG bytes are not decoded or encoded again, only
the header is new (the relay's id, sequence number and publish time; the capture time and the
metadata are the source's, so ages downstream are end to end).

Ports are stable across restarts, so that workers' sockets reconnect by themselves to a relay
that restarted: the n-th camera a node describes (in its describe order) gets the same pair of
ports after the control endpoint every time (see Slots).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

import zmq

from framebus.common.protocol import CameraInfo, Frame, ProtocolError
from framebus.common.publisher import FramePublisher
from framebus.common.pull_server import PullServer
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.security import CurveServer
from framebus.common.sockets import StreamOptions
from framebus.common.stream import StreamPublisher
from framebus.common.words import Delivery, State
from framebus.worker_node.republish import published_state, stream_endpoint
from framebus.worker_node.sink import BaseSink, ReceiverView
from framebus.worker_node.subscription import STALE_AFTER_S, CameraStatus, Subscription

log = logging.getLogger("worker_node.relay")

STATUS_INTERVAL_S = 1.0  # as a capture node's default: a quiet stream says why
TICK_S = 0.25  # statuses and describe entries are refreshed this often
EVERY_FRAME_WAIT_S = 1.0  # an every-frame send waits this long for a full downstream queue
RATE_WINDOW_S = 1.0  # the received rate (describe's published_fps) is measured over this long
RETRY_BIND_S = 5.0  # a stream whose ports could not be bound is tried again after this long
MAX_REFUSED = 1024  # camera ids remembered as refused (each is logged once)


@dataclasses.dataclass(frozen=True)
class Upstream:
    """One node the relay reads: its name (the prefix of its cameras' ids) and its endpoint;
    `listen`: the relay binds `endpoint` and the node connects out to it (behind NAT)."""

    name: str
    endpoint: str
    listen: bool = False


@dataclasses.dataclass(frozen=True)
class Slots:
    """Where the relayed streams of the `index`-th upstream go: `per_node` pairs of ports (frames,
    pull) after the control endpoint's port, in a block of their own per upstream."""

    control: str
    index: int
    per_node: int

    def endpoints(self, slot: int) -> tuple[str, str]:
        first = 2 * (self.index * self.per_node + slot)
        return stream_endpoint(self.control, first), stream_endpoint(self.control, first + 1)


class _Deadline(threading.Event):
    """A stop flag that sets itself after `seconds`: an every-frame send waits no longer."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self._until = time.monotonic() + seconds

    def is_set(self) -> bool:
        return time.monotonic() >= self._until


class RelayedStream:
    """One camera served again. Owned by its node's driver thread; info() from any thread."""

    def __init__(
        self,
        ctx: zmq.Context,
        camera: str,
        endpoints: tuple[str, str],
        every_frame: bool,
        security: CurveServer | None,
    ) -> None:
        self.camera = camera
        self._socket = FramePublisher(ctx, endpoints[0], StreamOptions(every_frame=every_frame), security=security)
        try:
            self._pull = PullServer(ctx, endpoints[1], camera, security)
        except BaseException:
            self._socket.close()
            raise
        self.pull_endpoint = self._pull.endpoint
        self.stream = StreamPublisher(camera, self._socket, STATUS_INTERVAL_S, tap=self._pull)
        self._pull.start()
        self.dropped = 0  # every-frame: frames no downstream worker took in time
        self.fps = 0.0  # frames received per second, over the last RATE_WINDOW_S
        self._frames = 0
        self._window_start = time.monotonic()

    def forward(self, frame: Frame) -> bool:
        """The frame as it came, under this stream's id. Every-frame delivery waits up to
        EVERY_FRAME_WAIT_S for a worker's full queue, and drops frames while no worker is
        connected (the upstream's back-pressure ends at the relay, not at a worker not there)."""
        h = frame.header
        self._frames += 1
        deadline = None
        if self.stream.delivery == Delivery.EVERY_FRAME:
            if not self._socket.wait_for_subscriber(0):
                self.dropped += 1
                return False
            deadline = _Deadline(EVERY_FRAME_WAIT_S)
        sent = self.stream.send_frame(frame.jpeg, (h.width, h.height), h.capture_ns, deadline, h.meta)
        if not sent:
            self.dropped += 1
        return sent

    def roll_rate(self, now: float) -> None:
        span = now - self._window_start
        if span >= RATE_WINDOW_S:
            self.fps = self._frames / span
            self._frames = 0
            self._window_start = now

    def pool_infos(self) -> tuple[CameraInfo, ...]:
        """The streams of the worker pools on this relayed camera (docs/pools.md)."""
        return self._pull.pool_infos()

    def close(self) -> None:
        self._pull.stop()
        self.stream.close()


class RelaySink(BaseSink):
    """One upstream node's side of the relay (worker_node.sink's shape)."""

    cadence = TICK_S

    def __init__(
        self,
        ctx: zmq.Context,
        upstream: Upstream,
        slots: Slots,
        security: CurveServer | None,
        on_ready: Callable[[], None] = lambda: None,
    ) -> None:
        self.upstream = upstream
        # Set once the node's cameras are known (and bound): a relay that answered describe
        # before would tell its workers "no cameras", and they would drop their subscriptions.
        self.ready = upstream.listen
        self._on_ready = on_ready
        self._ctx = ctx
        self._slots = slots
        self._security = security
        self._streams: dict[str, RelayedStream] = {}  # the upstream's camera id -> its relayed stream
        self._slot_of: dict[str, int] = {}  # the upstream's camera id -> its port slot, for good
        self._bind_failed: dict[str, float] = {}  # camera -> when to try binding it again
        self._refused: OrderedDict[str, None] = OrderedDict()
        self._described: tuple[CameraInfo, ...] = ()  # replaced whole: read from the control thread
        self._log = RateLimitedLog(log, interval=30.0)

    # ------------------------------------------------------------------ the sink

    def on_frame(self, sub: Subscription, frame: Frame) -> None:
        camera = frame.header.camera
        delivery = Delivery.EVERY_FRAME if sub.every_frame else Delivery.LATEST
        relayed = self._streams.get(camera) or self._open(camera, delivery)
        if relayed is None:
            return
        try:
            relayed.forward(frame)
        except ProtocolError as exc:  # a header that fit upstream, with a longer id: too big
            self._log.warning(f"encode-{relayed.camera}", "camera %s: frame not relayed: %s", relayed.camera, exc)

    def on_tick(self, receiver: ReceiverView) -> None:
        described = receiver.camera_info
        heard = self._heard(receiver.subscriptions)
        for camera, info in described.items():
            if camera not in self._streams:
                self._open(camera, info.delivery)
        for camera in heard:  # a node behind NAT: a camera it told of, even one with no frame yet
            if camera not in self._streams:
                self._open(camera, Delivery.LATEST)
        entries = []
        now = time.monotonic()
        for camera, relayed in self._streams.items():
            relayed.roll_rate(now)
            upstream = described.get(camera)
            if upstream is None and not self.upstream.listen:
                continue  # the node no longer describes it: not served (its ports stay reserved)
            status = self._status(camera, receiver.subscriptions, heard)
            self._tell(relayed.stream, status)
            entries.append(self._entry(relayed, upstream, status))
            entries.extend(relayed.pool_infos())
        self._described = tuple(entries)
        if not self.ready and described and all(camera in self._streams for camera in described):
            self.ready = True
            self._on_ready()

    def infos(self) -> tuple[CameraInfo, ...]:
        """This node's relayed cameras, as last refreshed (any thread)."""
        return self._described

    def close(self) -> None:
        self._described = ()
        for relayed in self._streams.values():
            relayed.close()
        self._streams.clear()

    # ------------------------------------------------------------------ streams

    def _open(self, camera: str, delivery: str) -> RelayedStream | None:
        """The relayed stream of an upstream camera, bound on first sight; None when it cannot be
        (said once per camera, rate-limited)."""
        relayed_id = f"{self.upstream.name}/{camera}"
        if camera in self._refused or time.monotonic() < self._bind_failed.get(camera, 0.0):
            return None
        if relayed_id.count("/") > 3:
            self._refuse(camera, f"{relayed_id!r} would have more than 4 parts (relays chained too deep?)")
            return None
        slot = self._slot_of.get(camera, len(self._slot_of))
        if slot >= self._slots.per_node:
            self._refuse(camera, f"node {self.upstream.name} has more than {self._slots.per_node} cameras")
            return None
        endpoints = self._slots.endpoints(slot)
        try:
            relayed = RelayedStream(self._ctx, relayed_id, endpoints, delivery == Delivery.EVERY_FRAME, self._security)
        except zmq.ZMQError as exc:
            self._bind_failed[camera] = time.monotonic() + RETRY_BIND_S
            self._log.warning(f"bind-{camera}", "camera %s: not relayed yet: %s", relayed_id, exc)
            return None
        self._slot_of[camera] = slot
        self._bind_failed.pop(camera, None)
        self._streams[camera] = relayed
        log.info(
            "camera %s: relayed on %s (pull %s, %s)",
            relayed_id,
            relayed.stream.endpoint,
            relayed.pull_endpoint,
            relayed.stream.delivery,
        )
        return relayed

    def _refuse(self, camera: str, why: str) -> None:
        if camera not in self._refused:
            self._refused[camera] = None
            if len(self._refused) > MAX_REFUSED:
                self._refused.popitem(last=False)
            self._log.warning(f"refused-{self.upstream.name}", "camera %s not relayed: %s", camera, why)
        return None

    # ------------------------------------------------------------------ status and describe

    def _heard(self, subscriptions: Mapping[str, Subscription]) -> Mapping[str, tuple[CameraStatus, float]]:
        """A node behind NAT describes nothing: camera -> what it last said of it, and when."""
        if not self.upstream.listen:
            return {}
        return next((sub.heard for sub in subscriptions.values() if sub.listen), {})

    def _status(
        self, camera: str, subscriptions: Mapping[str, Subscription], heard: Mapping[str, tuple[CameraStatus, float]]
    ) -> CameraStatus:
        """What the upstream says of the camera (a node behind NAT: its last word, unless it fell silent)."""
        if self.upstream.listen:
            status, when = heard.get(camera, (CameraStatus(State.RECONNECTING), 0.0))
            silent = time.monotonic() - when
            if silent > STALE_AFTER_S:
                return CameraStatus(
                    State.RECONNECTING, f"nothing received from node {self.upstream.name} for {silent:.0f} s"
                )
            return status
        sub = subscriptions.get(camera)
        if sub is None:
            return CameraStatus(State.CONNECTING, f"subscribing to node {self.upstream.name}")
        return sub.status

    def _tell(self, stream: StreamPublisher, upstream: CameraStatus) -> None:
        """A status when the state changed, or nothing went out for STATUS_INTERVAL_S."""
        state, reason = published_state(upstream)
        if stream.status_due(state):
            stream.send_status(state, reason, upstream.attempt, upstream.retry_in_s)

    def _entry(self, relayed: RelayedStream, upstream: CameraInfo | None, status: CameraStatus) -> CameraInfo:
        state, reason = published_state(status)
        fps = upstream.fps if upstream else relayed.fps  # a node behind NAT: the rate it sends at
        info = relayed.stream.info(fps, "" if state == State.STREAMING else reason)
        return dataclasses.replace(
            info,
            state=state.value,
            pull_endpoint=relayed.pull_endpoint,
            published_fps=min(relayed.fps, 1000.0),
            reconnects=upstream.reconnects if upstream else 0,
        )
