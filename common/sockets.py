"""ZeroMQ socket setup in one place: every option that matters is set before bind/connect.

libzmq defaults suit none of this: no heartbeats (a frozen peer is never noticed), infinite
linger (a stopping node hangs on unsent frames) and unbounded TCP buffering (frames go stale
in the kernel). See docs/protocol.md §1.4 (socket options) and §1.5.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from framebus.common.bind_error import bind_error, refuse_live_ipc
from framebus.common.endpoint import EndpointError, parse_endpoint
from framebus.common.latest import LatestSocket, camera_of, latest_context
from framebus.common.security import SocketSecurity

HEARTBEAT_IVL_MS = 500
HEARTBEAT_TIMEOUT_MS = 1500
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 500
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
MAX_PULL_REQUEST_BYTES = 8 * 1024 * 1024  # a pool result's header (64 KiB at most) and output JPEG
DEFAULT_SOCKET_BUFFER = 0  # kernel autotuning: a fixed buffer caps throughput at buffer / RTT
DEFAULT_NOTSENT_LOWAT = 16 * 1024
DEFAULT_QUEUE_FRAMES = 64
BeforeConnect = Callable[[zmq.Socket], None]


@dataclass(frozen=True)
class StreamOptions:
    """How a camera stream is delivered; the same values are needed on both ends."""

    every_frame: bool = False  # False: newest frame only (conflated); True: lossless, back-pressured
    socket_buffer: int = DEFAULT_SOCKET_BUFFER  # SNDBUF/RCVBUF; 0: the kernel's autotuning
    queue_frames: int = DEFAULT_QUEUE_FRAMES
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    notsent_lowat: int = DEFAULT_NOTSENT_LOWAT  # publisher: unsent bytes the kernel may hold; 0: no limit
    # Subscriber, newest frame only: True, the pump thread reads the SUB and keeps its newest frame
    # (common/latest.py), for a loop that may be held up; False, the receiving thread reads it, for
    # a loop that never is (the relay: one thread hop and two wake-ups a frame less).
    pump: bool = True


def _liveness(sock: zmq.Socket, security: SocketSecurity | None) -> None:
    if security is not None:
        security.apply(sock)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)


def bind_frame_publisher(
    ctx: zmq.Context, endpoint: str, options: StreamOptions, security: SocketSecurity | None = None
) -> zmq.Socket:
    """One socket per camera: conflation keeps one message per connection, not per topic."""
    if options.every_frame:
        # XPUB + NODROP: send() says EAGAIN instead of dropping when a subscriber's queue is
        # full, so the publisher can wait; XPUB also tells us when the first subscriber joins.
        sock = ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.XPUB_NODROP, 1)
        sock.setsockopt(zmq.SNDHWM, options.queue_frames)
    else:
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.CONFLATE, 1)
    if options.socket_buffer:
        sock.setsockopt(zmq.SNDBUF, options.socket_buffer)
    _liveness(sock, security)
    given = endpoint
    try:
        refuse_live_ipc(endpoint)
        if options.notsent_lowat and not options.every_frame and endpoint.startswith("tcp://"):
            endpoint = _listen_with_notsent_lowat(sock, endpoint, options.notsent_lowat)
        sock.bind(endpoint)
    except (zmq.ZMQError, OSError) as exc:
        sock.close(0)
        raise bind_error(given, exc) from None
    return sock


def _listen_with_notsent_lowat(sock: zmq.Socket, endpoint: str, lowat: int) -> str:
    """Conflation only drops frames inside ZeroMQ: bytes handed to TCP must be delivered, and
    the kernel's send buffer autotunes to ~6 frames, which on a slow link is seconds of age.
    TCP_NOTSENT_LOWAT keeps unsent bytes in the kernel small, so frames wait (and get
    replaced) in the conflating pipe instead, while in-flight data (throughput) is not capped.
    libzmq has no option for it: we create the listening socket, set it (accepted sockets
    inherit it) and hand the descriptor over with ZMQ_USE_FD."""
    try:
        parsed = parse_endpoint(endpoint, bind=True)
    except EndpointError as exc:
        raise OSError(errno.EINVAL, str(exc)) from None
    bind_host = "0.0.0.0" if parsed.host == "*" else parsed.host
    info = socket.getaddrinfo(bind_host, parsed.port or 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    listener = socket.socket(info[0], socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, lowat)
        listener.bind(info[4])
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    bound_port = listener.getsockname()[1]
    sock.setsockopt(zmq.USE_FD, listener.detach())  # libzmq owns and closes it from here
    return str(parsed.with_host(bind_host).with_port(bound_port))


TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux value; Python 3.11 lacks the name


def connect_frame_subscriber(
    ctx: zmq.Context,
    endpoint: str,
    options: StreamOptions,
    security: SocketSecurity | None = None,
    before_connect: BeforeConnect | None = None,
) -> zmq.Socket | LatestSocket:
    """One SUB per camera with exactly one subscribe(b""). For "latest" delivery, a
    LatestSocket keeps its newest frame: never ZMQ_CONFLATE, which leaks (common/latest.py).
    Its SUB lives in the pump's own context, out of reach of ctx.destroy() from this thread.
    Without the pump (options.pump False), the caller reads the SUB and keeps the newest itself."""
    plain = options.every_frame or not options.pump
    sock = ctx.socket(zmq.SUB) if plain else latest_context().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, options.queue_frames)  # latest: only while its reader is held up
    if plain:
        # A bounded queue can fill. libzmq 4.3.5 aborts the process (`_input_stopped`, libzmq
        # #3937) when a full queue outlives its connection and is read after a reconnect; with
        # IMMEDIATE the queue dies with its connection.
        sock.setsockopt(zmq.IMMEDIATE, 1)
    if options.socket_buffer:
        sock.setsockopt(zmq.RCVBUF, options.socket_buffer)
    sock.setsockopt(zmq.MAXMSGSIZE, options.max_message_bytes)
    _liveness(sock, security)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock = _connect_or_close(sock, endpoint, before_connect)
    return sock if plain else LatestSocket(sock)


def bind_frame_listener(
    ctx: zmq.Context, endpoint: str, options: StreamOptions, security: SocketSecurity | None = None
) -> LatestSocket:
    """Reverse direction (edge box behind NAT): the worker binds a SUB and capture nodes
    connect out to it. Its LatestSocket keeps the newest frame of each camera."""
    sock = latest_context().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, options.queue_frames)
    if options.socket_buffer:
        sock.setsockopt(zmq.RCVBUF, options.socket_buffer)
    sock.setsockopt(zmq.MAXMSGSIZE, options.max_message_bytes)
    _liveness(sock, security)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    return LatestSocket(_bind_or_close(sock, endpoint), key=camera_of)


def bind_pull_server(ctx: zmq.Context, endpoint: str, security: SocketSecurity | None = None) -> zmq.Socket:
    """Pull mode, node side: a ROUTER answering each worker's requests for the newest frame."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_PULL_REQUEST_BYTES)  # tiny, but a pool member's carries its result
    _liveness(sock, security)
    return _bind_or_close(sock, endpoint)


def connect_pull_client(
    ctx: zmq.Context,
    endpoint: str,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    security: SocketSecurity | None = None,
    before_connect: BeforeConnect | None = None,
) -> zmq.Socket:
    """Pull mode, worker side: a DEALER that holds one outstanding request (the credit)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    sock.setsockopt(zmq.IMMEDIATE, 1)  # no request queued for a node that is not connected
    _liveness(sock, security)
    return _connect_or_close(sock, endpoint, before_connect)


def bind_control(ctx: zmq.Context, endpoint: str, security: SocketSecurity | None = None) -> zmq.Socket:
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.MAXMSGSIZE, 64 * 1024)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
    _liveness(sock, security)
    return _bind_or_close(sock, endpoint)


def connect_control(
    ctx: zmq.Context,
    endpoint: str,
    max_message_bytes: int = 1024 * 1024,
    security: SocketSecurity | None = None,
    before_connect: BeforeConnect | None = None,
) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    _liveness(sock, security)
    return _connect_or_close(sock, endpoint, before_connect)


def _connect_or_close(sock: zmq.Socket, endpoint: str, before_connect: BeforeConnect | None = None) -> zmq.Socket:
    """Connect, or close the socket before the error propagates (an endpoint from the network
    may be one ZeroMQ refuses, e.g. without a port: no socket may leak per attempt).
    `before_connect` sets what must be set before connecting (options such as IMMEDIATE are
    copied at connect time; a monitor attached later misses the first events)."""
    try:
        if before_connect is not None:
            before_connect(sock)
        sock.connect(endpoint)
    except zmq.ZMQError:
        sock.close(0)
        raise
    return sock


def _bind_or_close(sock: zmq.Socket, endpoint: str) -> zmq.Socket:
    """Bind, or close the socket before the error propagates (no half-made sockets linger).
    Raises BindError: one line naming the endpoint and what to do."""
    try:
        refuse_live_ipc(endpoint)
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise bind_error(endpoint, exc) from None
    return sock


def bound_endpoint(sock: zmq.Socket) -> str:
    """The address actually bound (resolves tcp://host:* to the chosen port)."""
    value = sock.getsockopt(zmq.LAST_ENDPOINT)
    return value.decode() if isinstance(value, bytes) else str(value)


def rebuild(make: Callable[[], zmq.Socket], timeout: float = 2.0) -> zmq.Socket:
    """Bind a new socket on an endpoint whose old socket was just closed: libzmq closes the
    listener asynchronously, so the port may still be taken for a few milliseconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return make()
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                raise
        time.sleep(0.005)  # back-off between bind attempts, not a synchronisation
