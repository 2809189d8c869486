"""A node's well-known endpoint: answers "describe" with its streams, so a worker needs one
address per node rather than one per camera. Capture nodes and process workers both serve it."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import zmq

from framebus.common.protocol import (
    CameraInfo,
    DescribeReply,
    DescribeRequest,
    ProtocolError,
    decode,
    encode_describe_reply,
)
from framebus.common.ratelimit import RateLimitedLog, TokenBucket
from framebus.common.security import CurveServer, RevocationCheck
from framebus.common.sockets import bind_control, bound_endpoint, rebuild
from framebus.common.threads import WatchedThread
from framebus.common.waker import Waker

log = logging.getLogger("framebus.control")

# A describe answer costs ~0.1-0.3 ms of CPU (a few thousand a second fill a core of an edge
# box); a worker asks every few seconds. So each connection gets a small budget, and all of them
# together a larger one that keeps a flood from many connections to a few percent of a core.
PER_PEER_BURST, PER_PEER_PER_S = 16, 8.0
ALL_PEERS_BURST, ALL_PEERS_PER_S = 256, 200.0
MAX_PEERS_TRACKED = 1024  # budgets of the most recent connections (ROUTER identities)


class ControlServer:
    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        node_name: str,
        cameras: Callable[[], list[CameraInfo]],
        security: CurveServer | None = None,
    ) -> None:
        self._sock = bind_control(ctx, endpoint, security)
        self.endpoint = bound_endpoint(self._sock)
        self._rebind = lambda: bind_control(ctx, self.endpoint, security)
        self._name = node_name
        self._cameras = cameras
        self._stop = threading.Event()
        self._waker = Waker()  # ends the wait at stop() and at a revocation: the thread sleeps until then
        self._revoked = RevocationCheck(security, self._waker)
        self._bad = RateLimitedLog(log)
        self._peers: OrderedDict[bytes, TokenBucket] = OrderedDict()
        self._all_peers = TokenBucket(ALL_PEERS_BURST, ALL_PEERS_PER_S)
        self._thread = WatchedThread(self._serve, "control")  # its death stops the process, and says why

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is None:  # never started (a start that failed): the socket is still ours
            self._sock.close(0)
            self._waker.close()
            return
        self._waker.wake()
        self._thread.join(1.0)

    def _serve(self) -> None:
        """Answers until stop(). Woken only by a request, a revocation or stop(): a relay or a
        node at rest wakes for nothing (it polled 10 times a second)."""
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._waker, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if self._revoked.due():  # drop every connection: peers re-authenticate
                    poller.unregister(self._sock)
                    self._sock.close(0)
                    self._sock = rebuild(self._rebind)
                    poller.register(self._sock, zmq.POLLIN)
                ready = dict(poller.poll())
                if self._waker.fileno() in ready:
                    self._waker.clear()
                if self._sock in ready:
                    self._handle(self._sock.recv_multipart(copy=False))
        finally:
            self._sock.close(0)
            self._waker.close()

    def _within_budget(self, identity: bytes) -> bool:
        bucket = self._peers.pop(identity, None) or TokenBucket(PER_PEER_BURST, PER_PEER_PER_S)
        self._peers[identity] = bucket  # most recent last
        if len(self._peers) > MAX_PEERS_TRACKED:
            self._peers.popitem(last=False)
        if not bucket.take():
            self._bad.warning(
                "rate", "control: a peer asks more than %g times a second; the rest ignored", PER_PEER_PER_S
            )
            return False
        if not self._all_peers.take():
            self._bad.warning(
                "rate-all", "control: asked more than %g times a second in all; the rest ignored", ALL_PEERS_PER_S
            )
            return False
        return True

    def _handle(self, parts: list[zmq.Frame]) -> None:
        if not self._within_budget(parts[0].bytes):  # before decoding: every message costs
            return
        if len(parts) != 2:
            self._bad.warning("shape", "control: ignored a request of %d parts (expected 1)", len(parts) - 1)
            return
        identity, body = parts
        try:
            request = decode(body.buffer)
        except ProtocolError as exc:
            self._bad.warning("malformed", "control: ignored a malformed request: %s", exc)
            return
        except Exception as exc:  # the contract is ProtocolError only: a decoder bug must not end the thread
            self._bad.warning("bug", "control: a request broke the decoder (%s: %s); ignored", type(exc).__name__, exc)
            return
        if not isinstance(request, DescribeRequest):
            self._bad.warning(
                "kind", "control: ignored a %s (only describe requests are served)", type(request).__name__
            )
            return
        reply = DescribeReply(self._name, time.time_ns(), tuple(self._cameras()))
        try:
            message = encode_describe_reply(reply)
        except ProtocolError as exc:  # too big a reply: say so on every try, and keep serving
            self._bad.warning("reply", "control: cannot send a describe reply: %s", exc)
            return
        try:
            self._sock.send_multipart([identity, message], zmq.NOBLOCK)
        except zmq.Again:
            pass  # the client went away
