"""`worker-node describe`: ask a node once for its cameras and its clock, print them, exit."""

from __future__ import annotations

import argparse
import logging

import zmq

from framebus.common.cli_args import arg_type, endpoint_arg
from framebus.common.redact import redact
from framebus.common.units import parse_duration
from framebus.worker_node import flags
from framebus.worker_node.discovery import ClockOffset, DiscoveryError, describe_with_clock

log = logging.getLogger("worker_node")


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    desc = sub.add_parser(
        "describe",
        help="list a node's cameras",
        description="Ask a node once for its cameras (state, size, fps, delivery, endpoint) and how far its clock "
        "is from this host's, print them and exit: 0 if it answered, 1 if not.",
    )
    desc.add_argument(
        "--node",
        type=endpoint_arg(),
        required=True,
        metavar="ENDPOINT",
        help="the node's describe endpoint, e.g. tcp://edge1:5555",
    )
    flags.add_keys(desc)
    desc.add_argument(
        "--timeout",
        type=arg_type(parse_duration),
        default=3.0,
        metavar="T",
        help="how long to wait for the answer (default 3s)",
    )
    desc.set_defaults(func=main)
    return desc


def clock_line(clock: ClockOffset) -> str:
    """'the node is 7.3 ms behind this host', never '-7.3 ms ahead'."""
    direction = "ahead of" if clock.seconds >= 0 else "behind"
    return (
        f"  clock: the node is {abs(clock.seconds) * 1000:.1f} ms {direction} this host "
        f"(± {clock.uncertainty * 1000:.1f} ms)"
    )


def main(args: argparse.Namespace) -> int:
    access = flags.access(args, [args.node])
    with zmq.Context() as ctx:
        try:
            reply, clock = describe_with_clock(ctx, args.node, args.timeout, access.client(args.node))
        except DiscoveryError as exc:
            log.error("%s", exc)
            return 1
    print(f"node {reply.node}: {len(reply.cameras)} camera(s)")
    print(clock_line(clock))
    for c in reply.cameras:
        line = f"  {c.camera:<16} {c.state:<12} {c.width}x{c.height} @ {c.fps:.1f} fps  {c.delivery:<11} {c.endpoint}"
        print(line + (f"  ({redact(c.reason)})" if c.reason else ""))  # a node may be older than this worker
    return 0
