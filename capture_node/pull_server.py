"""Pull mode for slow links: a worker asks for the newest frame when it is ready.

With PUB/SUB, frames already handed to TCP must be delivered however old they get; on a link
slower than the stream that is what bounds frame age. Here a worker holds a credit of one or
two requests ("the newest frame after seq N"), so at most that many frames are ever in
flight: the node answers a waiting request the moment a newer frame is encoded, or at once if
it already has one. Measured across namespaces: ~1.3 frame transmit times of age at half the
needed rate, against ~2.5 with conflated PUB/SUB.
"""

from __future__ import annotations

import logging
import threading
import time

import zmq

from framebus.common.protocol import ProtocolError, PullRequest, decode
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.security import CurveServer, RevocationCheck
from framebus.common.sockets import bind_pull_server, bound_endpoint, rebuild
from framebus.common.waker import Waker

log = logging.getLogger("capture_node.pull_server")
PENDING_LIMIT = 1024  # requesters waiting at once; more are answered with the status
PENDING_EXPIRY_S = 30.0


class PullServer:
    """Owns a ROUTER socket in its own thread; the publish thread hands it frames via offer()."""

    def __init__(self, ctx: zmq.Context, endpoint: str, camera: str, security: CurveServer | None = None) -> None:
        self._camera = camera
        self._sock = bind_pull_server(ctx, endpoint, security)
        self.endpoint = bound_endpoint(self._sock)
        self._rebind = lambda: bind_pull_server(ctx, self.endpoint, security)
        self._revoked = RevocationCheck(security)
        self._waker = Waker()
        self._lock = threading.Lock()
        self._frame: tuple[int, bytes] | None = None  # (seq, encoded FRAME message)
        self._status: bytes | None = None
        self._pending: dict[bytes, tuple[int, float]] = {}  # identity -> (after_seq, since)
        self._stop = threading.Event()
        self._bad = RateLimitedLog(log)
        self._thread = threading.Thread(target=self._serve, name=f"pull-{camera}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer_frame(self, seq: int, message: bytes) -> None:
        with self._lock:
            self._frame = (seq, message)
            self._status = None
        if self._pending:  # nobody waiting: a request arriving later finds this frame anyway
            self._wake()

    def waiting(self) -> bool:
        """Is a pull request waiting for a frame? (Read by the publish thread: a len() of a
        dict the pull thread changes is safe to read.)"""
        return bool(self._pending)

    def forget_frame(self) -> None:
        """Frames are not being encoded (nobody watches): a request arriving now must wait
        for a fresh one, not get the last frame encoded, which may be minutes old."""
        with self._lock:
            self._frame = None

    def offer_status(self, message: bytes) -> None:
        """Waiting requesters learn why no frame comes (and ask again)."""
        with self._lock:
            self._status = message
        self._wake()

    def _wake(self) -> None:
        self._waker.wake()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is None:  # never started: nothing runs, close what we hold
            self._sock.close(0)
            self._waker.close()
            return
        self._wake()
        self._thread.join(1.0)

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._waker, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(1000))
                if self._revoked.due():  # drop every connection: peers re-authenticate
                    poller.unregister(self._sock)
                    self._sock.close(0)
                    self._sock = rebuild(self._rebind)
                    poller.register(self._sock, zmq.POLLIN)
                    self._pending.clear()
                    continue
                if self._sock in ready:
                    self._on_requests()
                if self._waker.fileno() in ready:
                    self._waker.clear()
                self._answer_pending()
        finally:
            self._sock.close(0)
            self._waker.close()

    def _on_requests(self) -> None:
        for _ in range(256):  # bounded: a flood cannot starve the answers
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 2:
                self._bad.warning("shape", "camera %s: pull request of %d parts ignored", self._camera, len(parts) - 1)
                continue
            identity, body = parts
            try:
                request = decode(body)
            except ProtocolError as exc:
                self._bad.warning("malformed", "camera %s: malformed pull request ignored: %s", self._camera, exc)
                continue
            if not isinstance(request, PullRequest):
                self._bad.warning(
                    "kind", "camera %s: %s on the pull endpoint ignored", self._camera, type(request).__name__
                )
                continue
            if len(self._pending) >= PENDING_LIMIT and identity not in self._pending:
                self._bad.warning(
                    "full", "camera %s: %d pull requests waiting; one refused", self._camera, PENDING_LIMIT
                )
                continue
            self._pending[identity] = (request.after_seq, time.monotonic())

    def _answer_pending(self) -> None:
        if not self._pending:
            return
        with self._lock:
            frame, status = self._frame, self._status
            self._status = None  # a status answers the requests waiting now, once
        now = time.monotonic()
        for identity, (after_seq, since) in list(self._pending.items()):
            # Wait only while the worker already has the newest frame; a sequence number the
            # node never produced means the node restarted since: send the newest.
            if frame is not None and frame[0] != after_seq:
                reply = frame[1]
            elif status is not None:
                reply = status
            elif now - since > PENDING_EXPIRY_S:
                del self._pending[identity]  # the worker re-asks on its own after a while
                continue
            else:
                continue
            del self._pending[identity]
            try:
                self._sock.send_multipart([identity, reply], zmq.NOBLOCK, copy=False)
            except zmq.ZMQError:
                pass  # the worker went away
