"""A node in the test's own process, with real sockets: a control endpoint that describes one
camera and a publisher that sends whatever messages the test makes, at a steady rate. For the
tests of what workers do with messages a real capture node never sends."""

from __future__ import annotations

import threading
from collections.abc import Callable

import zmq

from framebus.common.control import ControlServer
from framebus.common.protocol import CameraInfo
from framebus.common.publisher import FramePublisher
from framebus.common.sockets import StreamOptions


class FakeNode:
    """`message(n)` is the n-th message (n from 1) of camera `camera`, sent every `interval` s."""

    def __init__(
        self, camera: str, width: int, height: int, message: Callable[[int], bytes], interval: float = 0.025
    ) -> None:
        self.ctx = zmq.Context()
        self.publisher = FramePublisher(self.ctx, "tcp://127.0.0.1:*", StreamOptions())
        info = CameraInfo(camera, self.publisher.endpoint, width, height, 1 / interval, "streaming", "latest")
        self.control = ControlServer(self.ctx, "tcp://127.0.0.1:*", "fake-node", lambda: [info])
        self.control.start()
        self.endpoint = self.control.endpoint
        self.sent = 0
        self._message = message
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self) -> None:
        while not self._stop.wait(self._interval):
            self.sent += 1
            self.publisher.try_send(self._message(self.sent))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.control.stop()
        self.publisher.close()
        self.ctx.destroy(0)
