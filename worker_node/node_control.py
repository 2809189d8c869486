"""The describe exchange with one capture node, and what a user is told when it does not answer.

A node is asked to describe its cameras every few seconds. Replies are taken only against
requests: each request grants one reply (and a bounded number of parse attempts), so a peer that
floods replies nobody asked for costs a cheap read per message, never a parse, and never more
than MAX_READS_PER_POLL reads per poll: the other sockets of the worker keep being served.

A node that does not answer within NOT_ANSWERING_S is reported with the endpoint and the likely
cause (worker_node.link), again every REPEAT_S while it lasts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import zmq

from framebus.common.protocol import DescribeReply, encode_describe_request
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.security import CurveClient
from framebus.common.sockets import connect_control
from framebus.worker_node.discovery import DiscoveryError, parse_reply
from framebus.worker_node.link import LinkMonitor

log = logging.getLogger("worker_node.receiver")

NOT_ANSWERING_S = 3.0  # no describe reply for this long: tell the user, and why
REPEAT_S = 30.0  # and again this often while it lasts
MAX_READS_PER_POLL = 16  # messages read from one node's control socket per poll
MAX_OUTSTANDING = 2  # requests whose replies are still welcome (a slow node answers late)
PARSES_PER_REQUEST = 128  # malformed replies parsed (and reported) per request, at most
RECREATE_AFTER_ROUNDS = 3  # rounds without a connection before the socket is made anew


@dataclass(frozen=True)
class NodeHealth:
    """What `web` and `top` show for a node."""

    node: str
    answering: bool
    problem: str = ""  # why not, when not answering
    silent_s: float = 0.0  # since the last reply (or since we started asking)


class NodeControl:
    """One node's control socket (a DEALER with IMMEDIATE: no request queues for a node that is
    not connected) and its link monitor. The owner registers `sockets` with its poller and calls
    read() when one is readable."""

    def __init__(self, ctx: zmq.Context, node: str, security: CurveClient | None) -> None:
        self.node = node
        self._ctx = ctx
        self._security = security
        self._bad = RateLimitedLog(log)
        self._started = time.monotonic()
        self.last_reply: float | None = None
        self.answering_since: float | None = None  # the first reply after a silence
        self.asked_ns = 0
        self._outstanding = 0
        self._parses_left = 0
        self._unsent_rounds = 0
        self._reported: tuple[float, str] | None = None  # when the silence was last logged, and why
        self.unsolicited = 0
        self.monitor = LinkMonitor(ctx, secure=security is not None)
        self.socket = self._open()

    def _open(self) -> zmq.Socket:
        def prepare(sock: zmq.Socket) -> None:
            sock.setsockopt(zmq.IMMEDIATE, 1)  # copied at connect time: set it before
            self.monitor.attach(sock)

        try:
            return connect_control(self._ctx, self.node, security=self._security, before_connect=prepare)
        except zmq.ZMQError:
            self.monitor.close()
            raise

    @property
    def sockets(self) -> tuple[zmq.Socket, ...]:
        return (self.socket,) if self.monitor.socket is None else (self.socket, self.monitor.socket)

    def ask(self) -> bool:
        """Send a describe request. True when the socket was made anew (re-register `sockets`):
        libzmq stops retrying after some failures (a refused key, a protocol error)."""
        if self._send():
            return False
        self._unsent_rounds += 1
        if self.monitor.gave_up or self._unsent_rounds % RECREATE_AFTER_ROUNDS == 0:
            self._recreate()
            return True
        return False

    def _send(self) -> bool:
        """One describe request, if the node is connected (IMMEDIATE: none queues meanwhile)."""
        self.asked_ns = time.time_ns()
        try:
            self.socket.send(encode_describe_request(), zmq.NOBLOCK)
        except zmq.Again:
            return False
        self._unsent_rounds = 0
        self._outstanding = min(MAX_OUTSTANDING, self._outstanding + 1)
        self._parses_left = PARSES_PER_REQUEST
        return True

    def _recreate(self) -> None:
        previous = self.monitor
        self.close()
        self.monitor = LinkMonitor(self._ctx, secure=self._security is not None, state=previous.state)
        self.socket = self._open()
        self._outstanding = 0

    def read(self) -> list[DescribeReply]:
        """The replies to our requests among at most MAX_READS_PER_POLL pending messages."""
        if zmq.EVENT_HANDSHAKE_SUCCEEDED in self.monitor.read() and self._unsent_rounds:
            self._send()  # the request that found no connection goes now, not a round (2 s) later
        replies = []
        for _ in range(MAX_READS_PER_POLL):
            try:
                message = self.socket.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            if self._outstanding == 0 or self._parses_left == 0:
                self.unsolicited += 1
                self._bad.warning(
                    f"unsolicited-{self.node}",
                    "node %s: ignored %d describe replies nobody asked for (a misbehaving node?)",
                    self.node,
                    self.unsolicited,
                )
                continue
            self._parses_left -= 1
            try:
                reply = parse_reply(message.buffer, self.node)
            except DiscoveryError as exc:
                self._bad.warning(f"bad-{self.node}", "%s", exc)
                continue
            except Exception as exc:  # the decoder's contract is DiscoveryError: a bug, not a reason to die
                self._bad.warning(
                    f"bug-{self.node}",
                    "node %s: a describe reply broke the decoder (%s: %s); ignored. Please report this",
                    self.node,
                    type(exc).__name__,
                    str(exc)[:200],
                )
                continue
            self._outstanding -= 1
            now = time.monotonic()
            if self.last_reply is None or now - self.last_reply > NOT_ANSWERING_S:
                self.answering_since = now
            self.last_reply = now
            if reply.ignored:
                self._bad.warning(
                    f"ignored-{self.node}",
                    "node %s: invalid optional fields ignored, its cameras followed without them: %s",
                    self.node,
                    "; ".join(reply.ignored),
                )
            replies.append(reply)
        return replies

    def answering_for(self) -> float:
        """Seconds the node has been answering without a silence (0 when it is not)."""
        if self.answering_since is None or not self.health().answering:
            return 0.0
        return time.monotonic() - self.answering_since

    def health(self) -> NodeHealth:
        since = self.last_reply if self.last_reply is not None else self._started
        silent = time.monotonic() - since
        if silent <= NOT_ANSWERING_S:
            return NodeHealth(self.node, True, silent_s=silent)
        return NodeHealth(self.node, False, self.monitor.problem(), silent)

    def report(self) -> NodeHealth:
        """Health, logged: when a node stops answering (and every REPEAT_S after), and when it answers again."""
        health = self.health()
        if health.answering:
            if self._reported is not None:
                log.info("node %s answers again", self.node)
                self._reported = None
            return health
        now = time.monotonic()
        last = self._reported
        if last is None or now - last[0] >= (REPEAT_S if last[1] == health.problem else NOT_ANSWERING_S):
            self._reported = (now, health.problem)
            log.warning(
                "node %s is not answering (for %.0f s): %s; retrying", self.node, health.silent_s, health.problem
            )
        return health

    def close(self) -> None:
        self.monitor.close()
        self.socket.close(0)
