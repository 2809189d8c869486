"""Ask a capture node which cameras it has (the "describe" exchange on its control endpoint)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import zmq

from framebus.common.endpoint import EndpointError, parse_endpoint
from framebus.common.protocol import DescribeReply, ProtocolError, decode, encode_describe_request
from framebus.common.security import CurveClient
from framebus.common.sockets import connect_control


class DiscoveryError(RuntimeError):
    """The node did not answer, or answered something that is not a describe reply."""


def reachable_endpoint(camera_endpoint: str, node_endpoint: str) -> str:
    """A node bound to 0.0.0.0 reports tcp://0.0.0.0:port; reach it by the node's own host
    (by loopback for a node reached over ipc://, which is on this host). Anything else is
    returned as described: whether to follow it is worker_node.follow's decision."""
    try:
        cam = parse_endpoint(camera_endpoint, bind=True)
        node = parse_endpoint(node_endpoint)
    except EndpointError:
        return camera_endpoint
    if not cam.wildcard_host or cam.port is None:
        return camera_endpoint
    if node.scheme == "tcp":
        return str(cam.with_host(node.host))
    return str(cam.with_host("::1" if ":" in cam.host else "127.0.0.1"))


def parse_reply(message: bytes | memoryview, node_endpoint: str) -> DescribeReply:
    try:
        reply = decode(message)
    except ProtocolError as exc:
        raise DiscoveryError(f"node {node_endpoint}: malformed describe reply: {exc}") from None
    if not isinstance(reply, DescribeReply):
        raise DiscoveryError(f"node {node_endpoint}: answered with a {type(reply).__name__}, not a describe reply")
    cams = tuple(
        dataclasses.replace(
            c,
            endpoint=reachable_endpoint(c.endpoint, node_endpoint),
            pull_endpoint=reachable_endpoint(c.pull_endpoint, node_endpoint) if c.pull_endpoint else "",
        )
        for c in reply.cameras
    )
    return dataclasses.replace(reply, cameras=cams)


def describe(
    ctx: zmq.Context, node_endpoint: str, timeout: float = 3.0, security: CurveClient | None = None
) -> DescribeReply:
    """One request, one reply, bounded by timeout."""
    return describe_with_clock(ctx, node_endpoint, timeout, security)[0]


def describe_with_clock(
    ctx: zmq.Context, node_endpoint: str, timeout: float = 3.0, security: CurveClient | None = None
) -> tuple[DescribeReply, ClockOffset]:
    """Describe, and estimate the node's clock offset from the same round trip."""
    try:
        parse_endpoint(node_endpoint)
    except EndpointError as exc:
        raise DiscoveryError(str(exc)) from None
    sock = connect_control(ctx, node_endpoint, security=security)
    try:
        sent_ns = time.time_ns()
        sock.send(encode_describe_request())
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if sock.poll(int(remaining * 1000) + 1, zmq.POLLIN):
                message = sock.recv()
                received_ns = time.time_ns()
                reply = parse_reply(message, node_endpoint)
                return reply, ClockOffset.estimate(reply.time_ns, sent_ns, received_ns)
        hint = (
            "is a capture node running there, and does it admit our key (--key, --server-key, its allow-list)?"
            if security
            else "is a capture node running there? If it uses CURVE keys, give --key and --server-key"
        )
        raise DiscoveryError(f"node {node_endpoint}: no describe reply within {timeout:.1f} s ({hint})")
    finally:
        sock.close(0)


@dataclass(frozen=True)
class ClockOffset:
    """How far the node's clock is ahead of ours. Frame age is our receive time minus the
    node's capture time, so a skewed clock makes every age lie by exactly this much."""

    seconds: float
    uncertainty: float  # half the round trip: the reply was stamped somewhere within it

    @staticmethod
    def estimate(node_time_ns: int, sent_ns: int, received_ns: int) -> ClockOffset:
        midpoint = (sent_ns + received_ns) / 2
        return ClockOffset((node_time_ns - midpoint) / 1e9, (received_ns - sent_ns) / 2e9)
