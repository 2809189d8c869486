"""A consumer that reports what it gets, one line per event, for tests across hosts:

    python tests/age_probe.py tcp://NODE:5555 cam1 [--work 0.1] [--pull]
    frame <seq> <capture_ns> <received_ns>
    status <state>

It reads JPEG bytes (no decode) and "works" --work seconds after each frame. Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from worker_node import RemoteCapture


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("node")
    parser.add_argument("camera")
    parser.add_argument("--work", type=float, default=0.0)
    parser.add_argument("--pull", action="store_true")
    args = parser.parse_args()
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
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


if __name__ == "__main__":
    main()
