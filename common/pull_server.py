"""Pull mode for slow links: a worker asks for the newest frame when it is ready.

With PUB/SUB, frames already handed to TCP must be delivered however old they get; on a link
slower than the stream that is what bounds frame age. Here a worker holds a credit of one or
two requests ("the newest frame after seq N"), so at most that many frames are ever in
flight: the node answers a waiting request the moment a newer frame is encoded, or at once if
it already has one. Measured across namespaces: ~1.3 frame transmit times of age at half the
needed rate, against ~2.5 with conflated PUB/SUB.

A request may name a pool (common/pool.py): then each frame goes to at most one member of
that pool, and the members' results come back with their requests and go out as the pool's
own stream, `<camera>/<pool>`. A member that gives a token holds one credit across every camera
of this process, and is handed the frame of the camera whose turn it is (common/pool_turns.py).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import NamedTuple

import zmq

from framebus.common.endpoint import parse_endpoint
from framebus.common.pool import Pool, Pools, camera_state
from framebus.common.pool_turns import TURNS, Seat, Turns
from framebus.common.protocol import CameraInfo, ProtocolError, PullRequest, decode, validate_camera_id
from framebus.common.publisher import FramePublisher
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.security import CurveServer, RevocationCheck
from framebus.common.sockets import StreamOptions, bind_pull_server, bound_endpoint, rebuild
from framebus.common.stream import StreamPublisher
from framebus.common.waker import Waker
from framebus.common.words import State

log = logging.getLogger("framebus.pull_server")
PENDING_LIMIT = 1024  # requesters waiting at once; more are answered with the status
PENDING_EXPIRY_S = 30.0
HOUSEKEEPING_S = 0.25  # pools: expiry, and the status of their streams
_STREAMING = (State.STREAMING, "")


class Waiting(NamedTuple):
    after_seq: int
    since: float
    pool: Pool | None  # a pool member's request: the pool's newest frame not handed yet
    member: str = ""  # its token: one credit across this process's cameras (pool_turns)


def pool_endpoint(pull_endpoint: str, pool: str) -> str:
    """Where a pool's stream binds: any free port on the pull endpoint's host, or PATH-POOL."""
    parsed = parse_endpoint(pull_endpoint, "pull endpoint", bind=True, schemes=("tcp", "ipc", "inproc"))
    if parsed.scheme == "tcp":
        return str(parsed.with_port(None))
    return f"{parsed.scheme}://{parsed.path}-{pool}"


class PullServer:
    """Owns a ROUTER socket in its own thread; the publish thread hands it frames via offer()."""

    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        camera: str,
        security: CurveServer | None = None,
        status_interval: float = 1.0,
        turns: Turns = TURNS,
    ) -> None:
        self._camera = camera
        self._ctx = ctx
        self._security = security
        self._status_interval = status_interval  # of the pools' streams
        self._sock = self._bind(endpoint)
        self.endpoint = bound_endpoint(self._sock)
        self._rebind = lambda: self._bind(self.endpoint)
        self._waker = Waker()
        self._revoked = RevocationCheck(security, self._waker)
        self._lock = threading.Lock()
        self._frame: tuple[int, bytes] | None = None  # (seq, encoded FRAME message)
        self._status: bytes | None = None
        self._pending: dict[bytes, Waiting] = {}  # identity -> its request
        self._camera_state: tuple[State, str] = _STREAMING  # as the last frame or status told
        self._pools = Pools(camera, self._open_pool_stream)
        self._turns = turns
        self._seat = Seat(camera, self._has_frame_for, self._wake)
        self._stop = threading.Event()
        self._bad = RateLimitedLog(log)
        self._thread = threading.Thread(target=self._serve, name=f"pull-{camera}", daemon=True)

    def _bind(self, endpoint: str) -> zmq.Socket:
        sock = bind_pull_server(self._ctx, endpoint, self._security)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a member gone: the send fails, the frame goes to another
        return sock

    def _open_pool_stream(self, pool: str) -> StreamPublisher:
        stream_id = validate_camera_id(f"{self._camera}/{pool}")
        socket = FramePublisher(self._ctx, pool_endpoint(self.endpoint, pool), StreamOptions(), security=self._security)
        return StreamPublisher(stream_id, socket, self._status_interval)

    def start(self) -> None:
        self._thread.start()

    def _has_frame_for(self, pool: str) -> bool:
        """Has this camera a frame that pool has not had? (From other servers' threads: reads of
        an attribute and a dict entry, each whole under the GIL.)"""
        frame, shared = self._frame, self._pools.get(pool)
        return frame is not None and shared is not None and self._pools.may_hand(shared, frame[0])

    def pool_infos(self) -> tuple[CameraInfo, ...]:
        """The describe entries of this camera's pools' streams (from any thread)."""
        return self._pools.described

    def offer_frame(self, seq: int, message: bytes) -> None:
        with self._lock:
            self._frame = (seq, message)
            self._status = None
        self._camera_state = _STREAMING
        if self._pending:  # nobody waiting: a request arriving later finds this frame anyway
            self._wake()

    def waiting(self) -> bool:
        """Is a pull request waiting for a frame, or a pool member working (it asks again soon,
        and must find a fresh frame then)? (Read by the publish thread: a len() of a dict the
        pull thread changes is safe to read, as is a bool.)"""
        return bool(self._pending) or self._pools.busy

    def forget_frame(self) -> None:
        """Frames are not being encoded (nobody watches): a request arriving now must wait
        for a fresh one, not get the last frame encoded, which may be minutes old."""
        with self._lock:
            self._frame = None

    def offer_status(self, message: bytes) -> None:
        """Waiting requesters learn why no frame comes (and ask again)."""
        with self._lock:
            self._status = message
        self._camera_state = camera_state(message)
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
            next_housekeeping = 0.0
            while not self._stop.is_set():
                ready = dict(
                    poller.poll(int(1000 * HOUSEKEEPING_S) if self._pools.busy or self._pools.described else 1000)
                )
                if self._revoked.due():  # drop every connection: peers re-authenticate
                    poller.unregister(self._sock)
                    self._sock.close(0)
                    self._sock = rebuild(self._rebind)
                    poller.register(self._sock, zmq.POLLIN)
                    self._pending.clear()
                    self._turns.leave(self._seat)
                    continue
                if self._sock in ready:
                    self._on_requests()
                if self._waker.fileno() in ready:
                    self._waker.clear()
                self._answer_pending()
                now = time.monotonic()
                if now >= next_housekeeping:
                    self._pools.housekeeping(now, self._camera_state, self._pending.keys())
                    self._turns.expire(now)
                    next_housekeeping = now + HOUSEKEEPING_S
        finally:
            self._turns.leave(self._seat)
            self._pools.close()
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
            now = time.monotonic()
            pool = None
            if request.pool:
                pool = self._pools.admit(identity, request.pool, now)
                if pool is None:
                    continue  # refused, and said why
                if request.result is not None:
                    self._pools.take_result(pool, identity, request.result)
                if request.member and not self._turns.wait(
                    pool.name, request.member, self._seat, request.after_seq, identity, now
                ):
                    continue  # refused, and said why
            self._pending[identity] = Waiting(request.after_seq, now, pool, request.member if pool else "")

    def _answer_pending(self) -> None:
        if not self._pending:
            return
        with self._lock:
            frame, status = self._frame, self._status
            self._status = None  # a status answers the requests waiting now, once
        now = time.monotonic()
        for identity, (after_seq, since, pool, member) in list(self._pending.items()):
            # Wait only while the worker already has the newest frame; a sequence number the
            # node never produced means the node restarted since: send the newest. A pool
            # member waits while the newest frame went to another member of its pool, and a
            # member with a token also while it holds a frame or another camera has its turn.
            handed = None
            if pool is not None and pool.closed:  # closed while it waited (no member for long)
                self._drop(identity, pool, member)
                continue
            if frame is not None and (self._pools.may_hand(pool, frame[0]) if pool else frame[0] != after_seq):
                if (
                    member
                    and pool is not None
                    and not self._turns.claim(pool.name, member, self._seat, frame[0], identity, now)
                ):
                    continue
                reply = handed = frame[1]
            elif status is not None:
                reply = status
            elif now - since > PENDING_EXPIRY_S:
                self._drop(identity, pool, member)  # the worker re-asks on its own after a while
                continue
            else:
                continue
            self._drop(identity, pool, member if handed is None else "")
            try:
                self._sock.send_multipart([identity, reply], zmq.NOBLOCK, copy=False)
            except zmq.ZMQError:  # the worker went away
                if pool is not None:
                    self._pools.gone(pool, identity)  # and the frame is still there for another member
                    if member and handed is not None:
                        self._turns.release(pool.name, member, self._seat, self._waits_here(pool, member))
                continue
            if pool is not None and handed is not None and frame is not None:
                self._pools.handed(pool, identity, frame[0], handed, now)
                self._turns.handed(pool.name, self._seat)

    def _drop(self, identity: bytes, pool: Pool | None, member: str) -> None:
        """The request is answered or given up: it no longer waits here, unless another request
        of the same member does (from its new connection, when the old one died)."""
        del self._pending[identity]
        if member and pool is not None and not self._waits_here(pool, member):
            self._turns.unwait(pool.name, member, self._seat)

    def _waits_here(self, pool: Pool, member: str) -> bool:
        return any(w.member == member and w.pool is pool for w in self._pending.values())
