"""A benchmark helper process: one sender or receiver of one system, or the floor.

    python -m benchmarks.agent send imagezmq --clip C --out F
    python -m benchmarks.agent receive framebus --node tcp://127.0.0.1:P --mode fast --out F
    python -m benchmarks.agent stack --clip C --mode slow --out F --sent-out G
    python -m benchmarks.agent floor --clip C --seconds 10 [--unpaced]

It reports on stdout as JSON lines ({"ready": true}, ...) and stops on SIGTERM, writing its
records (receivers) or send log (senders) to --out first.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from benchmarks import peers
from benchmarks.consumer import FramebusReceiver, Receiver, consume, emit
from benchmarks.floor import measure_floor


def _stop_on_sigterm() -> threading.Event:
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stopping


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks.agent", description=__doc__)
    sub = p.add_subparsers(dest="role", required=True)
    send = sub.add_parser("send", help="a peer's sender")
    send.add_argument("system", choices=["imagezmq", "netgear"])
    send.add_argument("--clip", type=Path, required=True)
    send.add_argument("--ports", default="", help="NetGear: the receivers' ports, comma-separated")
    send.add_argument("--multiclient", action="store_true", help="NetGear: fan-out (multi-client) mode")
    send.add_argument("--out", type=Path, required=True)
    recv = sub.add_parser("receive", help="a consumer")
    recv.add_argument("system", choices=["framebus", "imagezmq", "netgear"])
    recv.add_argument("--mode", choices=["fast", "slow"], default="fast")
    recv.add_argument("--node", help="framebus: the capture node's describe endpoint")
    recv.add_argument("--endpoint", help="imagezmq: the sender's endpoint")
    recv.add_argument("--port", type=int, help="NetGear: the port this receiver binds")
    recv.add_argument("--multiclient", action="store_true", help="NetGear: fan-out (multi-client) mode")
    recv.add_argument("--out", type=Path, required=True)
    stack = sub.add_parser("stack", help="the Manager().list() stack recipe: writer, reader and Manager")
    stack.add_argument("--clip", type=Path, required=True)
    stack.add_argument("--mode", choices=["fast", "slow"], default="fast")
    stack.add_argument("--out", type=Path, required=True)
    stack.add_argument("--sent-out", type=Path, required=True)
    floor = sub.add_parser("floor", help="decode + encode of the clip in one thread")
    floor.add_argument("--clip", type=Path, required=True)
    floor.add_argument("--seconds", type=float, default=10.0)
    floor.add_argument("--unpaced", action="store_true")
    return p


def _receiver(args: argparse.Namespace) -> Receiver:
    if args.system == "framebus":
        return FramebusReceiver(args.node, decode=args.mode == "slow")
    if args.system == "imagezmq":
        return peers.ImagezmqReceiver(args.endpoint)
    return peers.NetgearReceiver(args.port, args.multiclient)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.role == "floor":
        emit({"floor": measure_floor(args.clip, args.seconds, paced=not args.unpaced)})
        return
    stopping = _stop_on_sigterm()
    if args.role == "send":
        if args.system == "imagezmq":
            peers.imagezmq_sender(args.clip, stopping.is_set, args.out)
        else:
            ports = [int(p) for p in args.ports.split(",") if p]
            peers.netgear_sender(args.clip, ports, args.multiclient, stopping.is_set, args.out)
    elif args.role == "receive":
        consume(_receiver(args), args.mode, stopping.is_set, args.out)
    else:
        peers.stack_launcher(args.clip, args.mode, args.out, args.sent_out, stopping)
    # Results are written. Leave without running interpreter shutdown: a peer's daemon
    # threads still blocked in ZeroMQ calls (NetGear) can hang or abort it.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
