"""What libzmq knows of one connecting socket's link, in words a user can act on.

A socket that cannot reach its peer says nothing: ZeroMQ retries silently for ever. Its monitor
events tell the cases apart (measured with libzmq 4.3.5):

- nothing listens (connection refused): CONNECT_DELAYED, CLOSED, CONNECT_RETRIED, again and again;
- no answer at all (host down, a firewall dropping packets): CONNECT_DELAYED and then nothing;
- something that is not ZeroMQ (a wrong port) or a CURVE server key that is not the node's:
  CONNECTED, then HANDSHAKE_FAILED_NO_DETAIL (or nothing, for a peer that never speaks);
- CURVE on one side only: HANDSHAKE_FAILED_PROTOCOL (mechanism mismatch);
- our key not in the node's allow-list: HANDSHAKE_FAILED_AUTH (and libzmq stops retrying);
- a ZeroMQ socket of another kind (a camera's PUB frame port): CONNECTED, DISCONNECTED, no retry;
- a ZeroMQ peer: HANDSHAKE_SUCCEEDED (whether it is a framebus node, only an answer tells).

The monitor is attached before connecting (common.sockets' before_connect), so no event is missed.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger("worker_node.link")
_IDS = itertools.count()
_NAMES = {getattr(zmq, name): name[6:] for name in dir(zmq) if name.startswith("EVENT_") and name != "EVENT_ALL"}
EVENTS = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_CONNECT_DELAYED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_CLOSED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
UNREACHABLE_AFTER_S = 1.0  # a refusal comes within a round trip; "no route" after ARP gives up
_FAILED_HANDSHAKE = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


@dataclass
class LinkState:
    """The last thing the monitor reported, and when (monotonic seconds)."""

    up: bool = False  # a completed handshake, not lost since
    tcp_connected: bool = False  # a TCP connection exists (handshake pending or done)
    failure: str = ""  # the last failure: refused, unreachable, handshake, auth, mechanism, protocol
    failure_value: int = 0  # its detail (a ZMQ_PROTOCOL_ERROR_* code, or a ZAP status code)
    handshakes: int = 0  # handshakes completed, all connections together
    unreachable_seen: bool = False  # an attempt failed slowly since the last handshake
    since: float = 0.0  # when `up` last changed


class LinkMonitor:
    """One socket's monitor: attach() before connect, register `socket` with the poller, and
    call read() when it is readable. `gave_up` tells when libzmq stopped retrying (a refused
    key, a protocol error): only a new socket connects again."""

    def __init__(self, ctx: zmq.Context, secure: bool, state: LinkState | None = None) -> None:
        """`state`: what an earlier socket to the same peer learnt (kept across a new socket)."""
        self._ctx = ctx
        self._secure = secure  # we hold CURVE keys for this peer
        self.state = (
            LinkState(failure=state.failure, failure_value=state.failure_value, unreachable_seen=state.unreachable_seen)
            if state
            else LinkState()
        )
        self.state.since = time.monotonic()
        self.socket: zmq.Socket | None = None
        self.gave_up = False
        self._watched: zmq.Socket | None = None
        self._attempt_started = time.monotonic()

    def attach(self, sock: zmq.Socket) -> None:
        """As common.sockets' before_connect: every event from the first connection attempt on."""
        address = f"inproc://framebus-link-{next(_IDS)}"
        sock.monitor(address, EVENTS)
        pair = self._ctx.socket(zmq.PAIR)
        pair.setsockopt(zmq.LINGER, 0)
        pair.connect(address)
        self.socket = pair
        self._watched = sock

    def read(self, limit: int = 64) -> list[int]:
        """Handle pending events (at most `limit`: a flapping link cannot starve the caller);
        returns the event numbers, oldest first."""
        events: list[int] = []
        if self.socket is None:
            return events
        for _ in range(limit):
            try:
                parts = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                message = parse_monitor_message(parts)
            except (ValueError, IndexError):
                continue
            event, value = int(message["event"]), int(message["value"])
            log.debug(
                "link to %s: %s %s",
                message.get("endpoint", b"?").decode(errors="replace"),
                _NAMES.get(event, event),
                value,
            )
            self._apply(event, value)
            events.append(event)
        return events

    def _apply(self, event: int, value: int) -> None:
        s = self.state
        if event == zmq.EVENT_CONNECT_DELAYED:
            self._attempt_started = time.monotonic()
        elif event == zmq.EVENT_CONNECTED:
            s.tcp_connected = True
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            s.up, s.failure, s.unreachable_seen, s.since = True, "", False, time.monotonic()
            s.handshakes += 1
        elif event == zmq.EVENT_DISCONNECTED:
            if s.up:
                s.since = time.monotonic()
            elif s.tcp_connected and not s.failure:
                # Closed during the handshake without a reason: a ZeroMQ socket of a kind that
                # does not talk to ours (libzmq gives up on it), or a peer that crashed.
                s.failure = "handshake"
                self.gave_up = True
            s.up = s.tcp_connected = False
        elif event == zmq.EVENT_CLOSED and not s.tcp_connected:
            # Refused at once (nothing listens, or a firewall rejects), or after seconds of
            # silence (no ARP answer: the host is down or unreachable). Once an attempt was slow,
            # fast failures are the kernel remembering that (EHOSTUNREACH at once), not refusals.
            if time.monotonic() - self._attempt_started > UNREACHABLE_AFTER_S:
                s.unreachable_seen = True
            s.failure = "unreachable" if s.unreachable_seen else "refused"
        elif event & _FAILED_HANDSHAKE:
            s.failure_value = value
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                s.failure = "auth"
            elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                s.failure = "handshake"
            elif value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                s.failure = "mechanism"
            else:
                s.failure = "protocol"
            if s.failure in ("auth", "protocol"):
                self.gave_up = True  # libzmq does not retry these: only a new socket connects again

    def problem(self) -> str:
        """Why the peer does not answer, as far as the link tells, and what to check."""
        s = self.state
        keys = "a CURVE key mismatch (--server-key is not this node's public key)"
        if s.failure == "auth":
            return (
                "the node refuses this worker's key: add its public key to the node's allow-list "
                "(framebus-keys allow), or check --key"
            )
        if s.failure == "mechanism":
            if self._secure:
                return "the node does not use CURVE keys but this worker does: drop --key/--server-key for it"
            return "the node requires CURVE keys: give --key and --server-key"
        if s.failure == "protocol":
            return f"a ZeroMQ protocol error ({s.failure_value:#x}): is this a framebus node of the same version?"
        if s.failure == "handshake":
            wrong = "not a node's control endpoint there (a wrong port, or a camera's frame port?)"
            if self._secure:
                return f"the ZeroMQ handshake fails: {keys}, or {wrong}"
            return f"something listens there but the ZeroMQ handshake fails: {wrong}"
        if s.up:
            return (
                "a ZeroMQ peer accepts the connection but does not answer describe: is this the node's "
                "control endpoint (not a camera's frame port)? Is the node overloaded?"
            )
        if s.tcp_connected:
            return (
                "a TCP connection is made but no ZeroMQ handshake completes: something that is not a "
                "framebus node listens there (a wrong port?)" + (f", or {keys}" if self._secure else "")
            )
        if s.failure == "refused":
            return (
                "connection refused: nothing listens there (is the node running? is the port right?), "
                "or a firewall rejects the connection"
            )
        if s.failure == "unreachable":
            return "the host does not answer: it is down or unreachable, or the network is cut (check the address and the network)"
        return "no connection at all: the host is down or unreachable, or a firewall drops the packets"

    def close(self) -> None:
        if self._watched is not None and not self._watched.closed:
            try:
                self._watched.disable_monitor()
            except zmq.ZMQError:
                pass
        if self.socket is not None:
            self.socket.close(0)
            self.socket = None
