"""A consumer that reports what it gets, one line per event, for tests across hosts:

    python tests/support/age_probe.py tcp://NODE:5555 cam1 [--work 0.1] [--pull] [--receiver]
    frame <seq> <capture_ns> <received_ns>
    status <state>
    link <time_ns> link to <endpoint>: <libzmq event> <value>     (pull mode: the stream's connection)

It reads JPEG bytes (no decode) and "works" --work seconds after each frame, with RemoteCapture
(or --receiver: the FrameReceiver every worker command uses). Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable

import zmq

from framebus.worker_node import RemoteCapture
from framebus.worker_node.receiver import FrameReceiver


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("node")
    parser.add_argument("camera")
    parser.add_argument("--work", type=float, default=0.0)
    parser.add_argument("--pull", action="store_true")
    parser.add_argument(
        "--listen", action="store_true", help="NODE is an endpoint to bind; capture nodes connect to it"
    )
    parser.add_argument("--receiver", action="store_true", help="read with FrameReceiver, as `worker-node save` does")
    args = parser.parse_args()
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    links = logging.getLogger("worker_node.link")
    links.setLevel(logging.DEBUG)
    to_stdout = logging.StreamHandler(sys.stdout)
    to_stdout.setFormatter(logging.Formatter("link %(time_ns)d %(message)s"))
    to_stdout.addFilter(lambda record: setattr(record, "time_ns", time.time_ns()) or True)
    links.addHandler(to_stdout)
    if args.listen or args.receiver:
        receive(args.node, args.camera, args.work, args.pull, args.listen, lambda: running)
        return
    cap = RemoteCapture(args.node, camera=args.camera, timeout=0.2, pull=args.pull)
    while not cap.isOpened() and running:  # the node may not be up yet
        cap.release()
        cap = RemoteCapture(args.node, camera=args.camera, timeout=0.5, pull=args.pull)
    print("opened", flush=True)
    state = ""
    while running:
        ok = cap.grab()
        if cap.status.state != state:
            state = cap.status.state
            print(f"status {state}", flush=True)
        if ok and cap.last is not None:
            print(f"frame {cap.last.seq} {cap.last.capture_ns} {time.time_ns()}", flush=True)
            if args.work:
                time.sleep(args.work)  # the consumer's processing time
    cap.release()
    sys.exit(0)


def receive(endpoint: str, camera: str, work: float, pull: bool, listen: bool, running: Callable[[], bool]) -> None:
    ctx = zmq.Context()
    if listen:
        receiver = FrameReceiver(ctx, [], listen=[endpoint])
    else:
        receiver = FrameReceiver(ctx, [endpoint], [camera], pull=pull)
    print("opened", flush=True)
    state = ""
    while running():
        for _sub, frame in receiver.poll(0.2):
            print(f"frame {frame.header.seq} {frame.header.capture_ns} {time.time_ns()}", flush=True)
            if work:
                time.sleep(work)  # the consumer's processing time
        sub = receiver.subscriptions.get(camera)
        if sub is not None and sub.status.state != state:
            state = sub.status.state
            print(f"status {state}", flush=True)
    receiver.close()
    ctx.destroy(0)


if __name__ == "__main__":
    main()
