"""`worker-node`: subscribe to capture nodes and do something with the frames."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import zmq

from common.logs import setup_logging
from common.shutdown import ShutdownSignals
from common.units import parse_duration, parse_size
from worker_node.discovery import DiscoveryError, describe
from worker_node.receiver import FrameReceiver
from worker_node.save import SavePolicy, SaveSink
from worker_node.status_line import print_status

log = logging.getLogger("worker_node")
T = TypeVar("T")


def _arg(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Adapt a ValueError-raising parser to argparse's error reporting."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="worker-node", description="Subscribe to framebus capture nodes.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)

    def with_nodes(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--node",
            action="append",
            required=True,
            metavar="ENDPOINT",
            help="a capture node's describe endpoint, e.g. tcp://edge1:5555 (repeatable)",
        )
        sp.add_argument(
            "--camera",
            action="append",
            default=[],
            metavar="ID",
            help="only these cameras (repeatable; default: all, including ones added later)",
        )

    save = sub.add_parser(
        "save",
        help="save frames as JPEG files",
        description="Save every N-th frame or one frame every T seconds of each camera as a plain JPEG file.",
    )
    with_nodes(save)
    save.add_argument("--out", type=Path, required=True, help="directory for the JPEG files")
    rate = save.add_mutually_exclusive_group()
    rate.add_argument(
        "--every-n", type=_arg(_positive_int), metavar="N", help="save every N-th frame (exact on every-frame streams)"
    )
    rate.add_argument(
        "--every", type=_arg(parse_duration), metavar="T", help="save one frame every T (e.g. 5s, 2m); default 1s"
    )
    save.add_argument(
        "--keep-files", type=_arg(_positive_int), default=0, metavar="N", help="keep at most N files (oldest deleted)"
    )
    save.add_argument(
        "--keep-bytes",
        type=_arg(parse_size),
        default=0,
        metavar="SIZE",
        help="keep at most SIZE bytes of files (e.g. 500M, 10G)",
    )
    save.add_argument("--count", type=_arg(_positive_int), default=0, metavar="N", help="stop after saving N files")
    save.add_argument(
        "--duration", type=_arg(parse_duration), default=0.0, metavar="T", help="stop after T (e.g. 30s, 1h)"
    )
    save.add_argument(
        "--status-interval",
        type=_arg(parse_duration),
        default=5.0,
        metavar="T",
        help="print a status line per camera every T (default 5s)",
    )

    desc = sub.add_parser("describe", help="list a node's cameras")
    desc.add_argument("--node", required=True, metavar="ENDPOINT")
    desc.add_argument("--timeout", type=_arg(parse_duration), default=3.0, metavar="T")
    return p


def run_save(args: argparse.Namespace) -> int:
    policy = SavePolicy(
        every_n=args.every_n or 0,
        every_s=0.0 if args.every_n else (args.every or 1.0),
        keep_files=args.keep_files,
        keep_bytes=args.keep_bytes,
    )
    try:
        sink = SaveSink(args.out, policy)
    except OSError as exc:
        log.error("cannot use output directory %s: %s", args.out, exc.strerror or exc)
        return 2
    signals = ShutdownSignals()
    ctx = zmq.Context()
    receiver = FrameReceiver(ctx, args.node, args.camera, wake_fd=signals.fd)
    start = time.monotonic()
    deadline = start + args.duration if args.duration else float("inf")
    next_status = start + args.status_interval
    log.info(
        "saving to %s (%s)",
        args.out,
        f"every {policy.every_n} frames" if policy.every_n else f"every {policy.every_s:g} s",
    )
    try:
        while not signals.requested:
            now = time.monotonic()
            if now >= deadline:
                break
            for _sub, frame in receiver.poll(min(next_status, deadline) - now):
                sink.offer(frame)
                if args.count and sink.count >= args.count:
                    return 0
            if time.monotonic() >= next_status:
                print_status(receiver.subscriptions.values())
                next_status += args.status_interval
    finally:
        receiver.close()
        ctx.destroy(0)
        signals.drain()
        log.info("saved %d files to %s", sink.count, args.out)
    return 0


def run_describe(args: argparse.Namespace) -> int:
    with zmq.Context() as ctx:
        try:
            reply = describe(ctx, args.node, args.timeout)
        except DiscoveryError as exc:
            log.error("%s", exc)
            return 1
    print(f"node {reply.node}: {len(reply.cameras)} camera(s)")
    for c in reply.cameras:
        print(f"  {c.camera:<16} {c.state:<12} {c.width}x{c.height} @ {c.fps:.1f} fps  {c.delivery:<11} {c.endpoint}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.command == "save":
        return run_save(args)
    return run_describe(args)


if __name__ == "__main__":
    sys.exit(main())
