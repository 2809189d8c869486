"""A camera's frame socket: conflated PUB for "latest", back-pressured XPUB for "every-frame"."""

from __future__ import annotations

import threading

import zmq
from zmq.utils.monitor import recv_monitor_message

from framebus.common.security import CurveServer, RevocationCheck
from framebus.common.sockets import StreamOptions, bind_frame_publisher, bound_endpoint, rebuild

_POLL_MS = 100


class FramePublisher:
    """Owned by one thread (ZeroMQ sockets are not thread-safe)."""

    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        options: StreamOptions,
        connect: tuple[str, ...] = (),
        security: CurveServer | None = None,
    ) -> None:
        self.every_frame = options.every_frame
        # A CURVE socket's one monitor is the allow-list watcher's (common/security.py), and
        # inproc connections raise no monitor events: such a stream is not told its subscribers
        # and encodes every frame.
        inproc = any(a.startswith("inproc://") for a in (endpoint, *connect))
        self._countable = not options.every_frame and security is None and not inproc
        self._revoked = RevocationCheck(security)
        self._make = lambda address: bind_frame_publisher(ctx, address, options, security)
        self._connect = connect
        self._subscribed = False
        self._peers: set[int] = set()  # latest: the connections' fds
        self._monitor: zmq.Socket | None = None
        self._sock = self._open(endpoint)
        self.endpoint = bound_endpoint(self._sock)

    def _open(self, endpoint: str) -> zmq.Socket:
        """Bind, watch, then connect out: a connection made before the monitor is attached
        raises no event, and its worker would never be counted (nor its frames encoded)."""
        sock = self._make(endpoint)
        self._monitor = self._watch_peers(sock)
        for target in self._connect:
            # Reverse direction, for edge boxes behind NAT: the worker binds, we connect out.
            # The same socket, so the same conflation: one pipe per worker, newest frame each.
            sock.connect(target)
        return sock

    def _drop_revoked_peers(self) -> None:
        """A revoked key stays connected until its connection ends: end them all, and let
        every peer reconnect through the allow-list again."""
        if not self._revoked.due():
            return
        self._stop_watching()
        self._sock.close(0)
        self._subscribed = False
        self._sock = rebuild(lambda: self._open(self.endpoint))

    def _watch_peers(self, sock: zmq.Socket) -> zmq.Socket | None:
        """A conflating PUB cannot be an XPUB (no CONFLATE there) and so never hears of its
        subscribers: its connections are counted instead (every framebus subscriber subscribes
        to everything). Every-frame's XPUB reports subscriptions itself."""
        self._peers.clear()
        if not self._countable:
            return None
        # Accepted / connected carry the connection's fd, as disconnected does (a handshake's
        # event carries none); a peer that never completes its handshake counts until it leaves.
        return sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)

    def _stop_watching(self) -> None:
        if self._monitor is not None:
            self._sock.disable_monitor()
            self._monitor.close(0)
            self._monitor = None

    def has_subscribers(self) -> bool:
        """Is anyone connected to take a frame? Cheap enough to ask before every encode."""
        if self._monitor is not None:
            while self._monitor.poll(0):
                change = recv_monitor_message(self._monitor)
                if change["event"] in (zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED):
                    self._peers.add(int(change["value"]))
                elif change["event"] == zmq.EVENT_DISCONNECTED:
                    self._peers.discard(int(change["value"]))
            return bool(self._peers)
        if not self.every_frame:
            return True  # not known (CURVE, inproc): someone may be there
        while self._sock.poll(0, zmq.POLLIN):
            event = self._sock.recv()
            if event[:1] == b"\x01":
                self._subscribed = True
            elif event[:1] == b"\x00":
                self._subscribed = False
        return self._subscribed

    def wait_for_subscriber(self, timeout: float) -> bool:
        if self.has_subscribers():
            return True
        self._sock.poll(int(timeout * 1000), zmq.POLLIN)
        return self.has_subscribers()

    def send(self, message: bytes, stop: threading.Event) -> bool:
        """Send one frame. Every-frame delivery waits while a subscriber's queue is full or
        no subscriber is connected (the frame goes to the next one); False only if stopped."""
        self._drop_revoked_peers()
        if not self.every_frame:
            self._sock.send(message)  # a copy is cheaper than zero-copy's hand-off for ~100 KB (profiled)
            return True
        while not stop.is_set():
            if not self.wait_for_subscriber(_POLL_MS / 1000):
                continue
            try:
                self._sock.send(message, zmq.NOBLOCK)
                return True
            except zmq.Again:
                self._sock.poll(_POLL_MS, zmq.POLLOUT)
        return False

    def try_send(self, message: bytes) -> None:
        """Best effort (status messages): never waits."""
        self._drop_revoked_peers()
        try:
            self._sock.send(message, zmq.NOBLOCK)
        except zmq.Again:
            pass

    def close(self) -> None:
        self._stop_watching()
        self._sock.close(0)
