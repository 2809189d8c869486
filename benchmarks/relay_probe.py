"""Workers for the relay scenarios, in one process: `--copies` workers per stream (each its own
connection, as that many worker hosts would make), each the Driver and FrameReceiver every
worker command runs, in a thread, doing nothing with the frames but noting their age. For uplink bytes (N connections), frame age and as the CPU
baseline of "one subscriber".

    python -m benchmarks.relay_probe --stream tcp://HOST:PORT CAMERA [--stream ...] [--copies N] [--pull]
    ready                      (every receiver has had a frame)
    summary {json}             (at SIGTERM: per stream, frames and age p50/p99 in ms)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import numpy as np

from framebus.common.protocol import Frame
from framebus.worker_node.sink import BaseSink, Driver, ReceiveOptions
from framebus.worker_node.subscription import Subscription


class Copy(BaseSink):
    """One worker: the Driver every worker command runs, with a sink that notes frame ages."""

    def __init__(self, endpoint: str, camera: str, pull: bool) -> None:
        self.ages_ms: list[float] = []
        self.seen = threading.Event()
        self.driver = Driver([self], ReceiveOptions((endpoint,), (camera,), pull=pull))
        self.thread = threading.Thread(target=self.driver.run, daemon=True)

    def on_frame(self, sub: Subscription, frame: Frame) -> None:
        self.ages_ms.append((time.time_ns() - frame.header.capture_ns) / 1e6)
        self.seen.set()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream", nargs=2, action="append", required=True, metavar=("ENDPOINT", "CAMERA"))
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--pull", action="store_true")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    copies = {f"{e} {c}": [Copy(e, c, args.pull) for _ in range(args.copies)] for e, c in args.stream}
    for group in copies.values():
        for copy in group:
            copy.thread.start()
    for group in copies.values():
        for copy in group:
            while not copy.seen.wait(0.5):
                if stop.is_set():
                    break
    mark = {id(copy): 0 for group in copies.values() for copy in group}
    signal.signal(signal.SIGUSR1, lambda *_: mark.update({id(c): len(c.ages_ms) for g in copies.values() for c in g}))
    print("ready", flush=True)  # after the handler: a SIGUSR1 sent at once would otherwise end the process
    stop.wait()
    for group in copies.values():
        for copy in group:
            copy.driver.stop()
            copy.thread.join(2)
    summary = {}
    for name, group in copies.items():
        ages = np.array([a for copy in group for a in copy.ages_ms[mark[id(copy)] :]])
        summary[name] = {
            "frames": int(len(ages)),
            "p50_ms": float(np.percentile(ages, 50)) if len(ages) else None,
            "p99_ms": float(np.percentile(ages, 99)) if len(ages) else None,
        }
    print("summary " + json.dumps(summary), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
