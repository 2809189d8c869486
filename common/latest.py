"""Keep only the newest message of a frame stream, without ZMQ_CONFLATE on the receiving side.

Why not ZMQ_CONFLATE: in libzmq 4.3.3 to 4.3.5 (the one pyzmq bundles) a conflating socket
leaks a whole message each time its I/O thread hands one over while the reading thread holds
the socket's one-message buffer: the handover is skipped, and the next message overwrites the
skipped one without freeing it (dbuffer_t::write). A save worker reading 30 frames a second
lost ~40 frames an hour that way: +5 MB/h (docs/benchmarks.md, soak). Why not a plain SUB read
by the worker's own loop: when that loop is busy (a slow handler, a slow disk), the socket's
queue fills, libzmq stops reading the connection, frames wait in TCP buffers and go stale, and
with heartbeats on libzmq can abort the whole process (`_input_stopped`, libzmq #3596).

So one thread per process (the pump) reads every such plain SUB as soon as messages arrive and
keeps the newest one (per camera, for a listener that many nodes connect to) in a slot; the
worker takes it from there. A LatestSocket stands in for the SUB socket: poll, recv and close
as on a zmq.Socket, and a file descriptor (fileno) that is readable while a message waits, for
zmq.Poller.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable
from typing import Literal, overload

import zmq

from framebus.common.protocol import Frame, ProtocolError, decode
from framebus.common.waker import Waker

log = logging.getLogger("framebus.latest")

READ_BATCH = 64  # messages read from one socket before the others get their turn
MAX_KEYS = 64  # cameras kept apart on one listener; beyond, the oldest unread is dropped
CLOSE_TIMEOUT_S = 5.0


class LatestSocket:
    """The newest message of a SUB socket that the pump reads. `key` tells the streams of a
    listener apart (the camera id of a message); without it, one stream.

    zmq.Poller reports an object it polls through fileno() by that number, so a LatestSocket
    equals (and hashes as) its number: maps keyed by sockets find it in poll() results."""

    def __init__(self, sock: zmq.Socket, key: Callable[[zmq.Frame], object] | None = None) -> None:
        endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
        self.last_endpoint = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)  # tcp://h:*: port
        self._sock = sock  # the pump's from here on: no other thread touches it
        self._key = key
        self._lock = threading.Lock()
        self._newest: dict[object, zmq.Frame] = {}
        self._ready = Waker()  # readable while a message waits
        self._fd = self._ready.fileno()
        self._released = threading.Event()  # the pump closed the SUB socket
        self.closed = False  # asked to close (the pump may not have yet)
        self._ready_closed = False
        _PUMP.add(self)

    def fileno(self) -> int:
        return self._fd

    def __hash__(self) -> int:
        return self._fd

    def __eq__(self, other: object) -> bool:
        return other is self or (isinstance(other, int) and not self.closed and other == self._fd)

    # ------------------------------------------------------------------ the pump's side

    def _store(self, messages: list[zmq.Frame]) -> None:
        with self._lock:
            if self.closed:
                return
            was_empty = not self._newest
            for message in messages:
                key = self._key(message) if self._key else None
                self._newest.pop(key, None)  # re-inserted last: the oldest unread stays first
                self._newest[key] = message
                if len(self._newest) > MAX_KEYS:
                    del self._newest[next(iter(self._newest))]
            if was_empty:
                self._ready.wake()

    # ------------------------------------------------------------------ the reader's side

    def _take(self) -> zmq.Frame | None:
        with self._lock:
            if not self._newest:
                return None
            message = self._newest.pop(next(iter(self._newest)))
            if not self._newest:
                self._ready.clear()
            return message

    def poll(self, timeout: int | None = None, flags: int = zmq.POLLIN) -> int:
        """zmq.POLLIN when a message waits (within timeout ms; None or negative: no limit)."""
        if not flags & zmq.POLLIN or self.closed:
            return 0
        if self._newest:
            return zmq.POLLIN
        if timeout == 0:
            return 0
        waiter = select.poll()  # not select.select(): it refuses descriptors above 1023
        waiter.register(self._fd, select.POLLIN)
        waiter.poll(None if timeout is None or timeout < 0 else timeout)
        return zmq.POLLIN if self._newest else 0

    @overload
    def recv(self, flags: int = 0, copy: Literal[True] = True) -> bytes: ...
    @overload
    def recv(self, flags: int, copy: Literal[False]) -> zmq.Frame: ...
    @overload
    def recv(self, flags: int = 0, *, copy: Literal[False]) -> zmq.Frame: ...
    def recv(self, flags: int = 0, copy: bool = True) -> bytes | zmq.Frame:
        while True:
            if self.closed:
                raise zmq.ZMQError(zmq.ENOTSOCK)
            message = self._take()
            if message is not None:
                return message.bytes if copy else message
            if flags & zmq.NOBLOCK:
                raise zmq.Again()
            self.poll(None)

    def send(self, data: object, flags: int = 0) -> None:
        raise zmq.ZMQError(zmq.ENOTSUP)  # as a SUB socket does

    def begin_close(self) -> None:
        """Ask the pump to close the SUB socket, without waiting: closing hundreds of streams
        asks for all first, so that they cost one pump round trip, not one each."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._newest.clear()
        _PUMP.remove(self)

    def close(self, linger: int | None = None) -> None:
        """The pump closes the SUB socket (it owns it); returns once it has."""
        if self._ready_closed:
            return
        self.begin_close()
        if not self._released.wait(CLOSE_TIMEOUT_S):
            log.error("the frame pump did not release a socket within %.0f s", CLOSE_TIMEOUT_S)
        self._ready.close()
        self._ready_closed = True


class _Pump:
    """The one thread that reads every LatestSocket's SUB socket. Sockets come and go through
    a command list and a wake-up byte; the pump alone polls, reads and closes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._added: list[LatestSocket] = []
        self._removed: list[LatestSocket] = []
        self._waker = Waker()  # a command is waiting
        self._thread: threading.Thread | None = None

    def add(self, owner: LatestSocket) -> None:
        with self._lock:
            self._added.append(owner)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="frame-pump", daemon=True)
                self._thread.start()
        self._waker.wake()

    def remove(self, owner: LatestSocket) -> None:
        with self._lock:
            self._removed.append(owner)
        self._waker.wake()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._waker, zmq.POLLIN)
        owners: dict[zmq.Socket, LatestSocket] = {}
        try:
            while True:
                for item, _ in poller.poll():
                    if item == self._waker.fileno():
                        self._commands(poller, owners)
                    elif (owner := owners.get(item)) is not None:
                        self._read(owner, poller, owners)
        except Exception:  # a dead pump would leave every stream silent: say so, loudly
            log.critical("the frame pump failed; frame streams stop", exc_info=True)
            raise

    def _commands(self, poller: zmq.Poller, owners: dict[zmq.Socket, LatestSocket]) -> None:
        self._waker.clear()
        with self._lock:
            added, self._added = self._added, []
            removed, self._removed = self._removed, []
        for owner in added:
            owners[owner._sock] = owner
            poller.register(owner._sock, zmq.POLLIN)
        for owner in removed:
            if owners.pop(owner._sock, None) is not None:
                poller.unregister(owner._sock)
            owner._sock.close(0)
            owner._released.set()

    def _read(self, owner: LatestSocket, poller: zmq.Poller, owners: dict[zmq.Socket, LatestSocket]) -> None:
        messages: list[zmq.Frame] = []
        sock = owner._sock
        try:
            while len(messages) < READ_BATCH and int(sock.get(zmq.EVENTS)) & zmq.POLLIN:
                messages.append(sock.recv(zmq.NOBLOCK, copy=False))  # EVENTS: cheaper than raising Again
        except zmq.Again:
            pass
        except zmq.ZMQError as exc:  # not expected on a socket only we use: drop it, say so
            log.error("frame pump: dropped a stream socket: %s", exc)
            poller.unregister(owner._sock)
            del owners[owner._sock]
        if messages:
            owner._store(messages if owner._key else messages[-1:])


def camera_of(message: zmq.Frame) -> object:
    """A listener's streams apart: the camera id of a frame or status (a malformed message
    is kept apart too, for the reader to count)."""
    try:
        decoded = decode(message.buffer)
    except ProtocolError:
        return None
    return decoded.header.camera if isinstance(decoded, Frame) else getattr(decoded, "camera", None)


_PUMP = _Pump()
_CONTEXT: zmq.Context | None = None
_CONTEXT_LOCK = threading.Lock()


def latest_context() -> zmq.Context:
    """The context of the pump's sockets: never destroyed, so that no other thread closes a
    socket the pump is reading."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            _CONTEXT = zmq.Context()
        return _CONTEXT
