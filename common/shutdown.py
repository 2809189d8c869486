"""The one way a framebus process learns it should stop (SIGTERM, SIGINT, SIGHUP) or reload
(SIGHUP, where the process can), waking a blocked zmq poll at once: no polling loop."""

from __future__ import annotations

import select
import signal
from types import FrameType

from framebus.common.waker import Waker


class ShutdownSignals:
    """Install once in the main thread; register `fd` with a zmq.Poller next to the sockets.
    With `reload`, SIGHUP asks for a reload (take_reload()); without, it stops the process
    cleanly like SIGTERM (the terminal it ran in was closed)."""

    def __init__(self, reload: bool = False) -> None:
        self._waker = Waker(pair=True)
        signal.set_wakeup_fd(self._waker.writer_fd, warn_on_full_buffer=False)
        self.requested = False
        self._reload = reload
        self._reload_requested = False
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP and self._reload:
            self._reload_requested = True
        else:
            self.requested = True

    @property
    def fd(self) -> int:
        return self._waker.fileno()

    def take_reload(self) -> bool:
        """True once per SIGHUP received (with reload=True)."""
        asked, self._reload_requested = self._reload_requested, False
        return asked

    def wait(self, timeout: float | None = None) -> None:
        """Block until a signal arrives (or timeout): for a main thread with nothing else to do."""
        if not self.requested and not self._reload_requested:
            waiter = select.poll()  # not select.select(): it refuses descriptors above 1023
            waiter.register(self.fd, select.POLLIN)
            waiter.poll(None if timeout is None else int(timeout * 1000))
        self.drain()

    def drain(self) -> None:
        self._waker.clear()
