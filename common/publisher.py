"""A camera's frame socket: conflated PUB for "latest", back-pressured XPUB for "every-frame"."""

from __future__ import annotations

import threading

import zmq

from common.sockets import StreamOptions, bind_frame_publisher, bound_endpoint

_POLL_MS = 100


class FramePublisher:
    """Owned by one thread (ZeroMQ sockets are not thread-safe)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, options: StreamOptions, connect: tuple[str, ...] = ()) -> None:
        self._every_frame = options.every_frame
        self._sock = bind_frame_publisher(ctx, endpoint, options)
        self.endpoint = bound_endpoint(self._sock)
        for target in connect:
            # Reverse direction, for edge boxes behind NAT: the worker binds, we connect out.
            # The same socket, so the same conflation: one pipe per worker, newest frame each.
            self._sock.connect(target)
        self._subscribed = False

    def has_subscribers(self) -> bool:
        """Only known for every-frame delivery (XPUB reports (un)subscriptions); else True."""
        if not self._every_frame:
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
        if not self._every_frame:
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
        try:
            self._sock.send(message, zmq.NOBLOCK)
        except zmq.Again:
            pass

    def close(self) -> None:
        self._sock.close(0)
