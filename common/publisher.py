"""A camera's frame socket: conflated PUB for "latest", back-pressured XPUB for "every-frame"."""

from __future__ import annotations

import threading

import zmq

from common.security import CurveServer, RevocationCheck
from common.sockets import StreamOptions, bind_frame_publisher, bound_endpoint, rebuild

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
        self._revoked = RevocationCheck(security)
        self._make = lambda address: bind_frame_publisher(ctx, address, options, security)
        self._connect = connect
        self._sock = self._bind(endpoint)
        self.endpoint = bound_endpoint(self._sock)
        self._subscribed = False

    def _bind(self, endpoint: str) -> zmq.Socket:
        sock = self._make(endpoint)
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
        self._sock.close(0)
        self._sock = rebuild(lambda: self._bind(self.endpoint))
        self._subscribed = False

    def has_subscribers(self) -> bool:
        """Only known for every-frame delivery (XPUB reports (un)subscriptions); else True."""
        if not self.every_frame:
            return True
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
        self._sock.close(0)
