"""SIGTERM/SIGINT handling that wakes a blocked zmq poll at once (no polling loop needed)."""

from __future__ import annotations

import signal
import socket
from types import FrameType


class ShutdownSignals:
    """Install once in the main thread; register `fd` with a zmq.Poller next to the sockets."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True

    @property
    def fd(self) -> int:
        return self._reader.fileno()

    def drain(self) -> None:
        try:
            while self._reader.recv(4096):
                pass
        except BlockingIOError:
            pass
