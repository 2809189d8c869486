"""A file descriptor that ends a blocked poll at once, made readable from another thread.

Every loop that blocks in zmq.Poller (or select) and must stop, or pick up work handed over by
another thread, registers one of these next to its sockets: no polling with timeouts. An
eventfd where the system has one (one descriptor, a counter), a socket pair elsewhere.
"""

from __future__ import annotations

import os
import socket
import threading


class Waker:
    """Readable from wake() until clear(); wake() from any thread, as often as wanted."""

    def __init__(self, pair: bool = False) -> None:
        """`pair`: a socket pair even where eventfd exists, for signal.set_wakeup_fd (which
        writes single bytes: an eventfd takes 8)."""
        self._closed = False
        self._lock = threading.Lock()  # wake() and close() from different threads: never a reused number
        self._pair: tuple[socket.socket, socket.socket] | None = None
        if hasattr(os, "eventfd") and not pair:
            self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            self._pair = socket.socketpair()
            for end in self._pair:
                end.setblocking(False)
            self._fd = self._pair[0].fileno()

    def fileno(self) -> int:
        """What to register with a poller (POLLIN)."""
        return self._fd

    @property
    def writer_fd(self) -> int:
        """The end signal.set_wakeup_fd writes to (a Waker made with pair=True)."""
        if self._pair is None:
            raise ValueError("writer_fd needs Waker(pair=True)")
        return self._pair[1].fileno()

    def wake(self) -> None:
        with self._lock:
            if self._closed:
                return  # the number may belong to another file by now: never write to it
            try:
                if self._pair is None:
                    os.eventfd_write(self._fd, 1)
                else:
                    self._pair[1].send(b"\0")
            except BlockingIOError:
                pass  # a wake-up is pending already

    def clear(self) -> None:
        """Not readable any more (until the next wake())."""
        try:
            if self._pair is None:
                os.eventfd_read(self._fd)
            else:
                while self._pair[0].recv(4096):
                    pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._pair is None:
                os.close(self._fd)
            else:
                for end in self._pair:
                    end.close()
