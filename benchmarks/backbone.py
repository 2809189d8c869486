"""Backbone figures: capture node CPU and fps at 720p30 with 1 and 4 subscribers, and the
frame age a consumer 3x slower than the camera sees.

    .venv/bin/python -m benchmarks.backbone [--seconds 20]

Subscribers are separate processes that receive (no decode), as a save or web worker does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import zmq

from benchmarks.measure import cpu_seconds, process_tree
from framebus.capture_node.pattern import TestPattern
from framebus.common import jpeg
from framebus.common.protocol import decode
from framebus.common.sockets import StreamOptions, connect_frame_subscriber
from framebus.worker_node import RemoteCapture


def start_node(control: str) -> tuple[subprocess.Popen[str], str, str]:
    """A capture node on the 720p30 test picture: (process, frame endpoint, control endpoint)."""
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "capture_node",
            "--control",
            control,
            "--width",
            "1280",
            "--height",
            "720",
            "--fps",
            "30",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    endpoint = control_endpoint = ""
    for line in node.stderr:  # type: ignore[union-attr]
        if m := re.search(r"frames on (\S+)", line):
            endpoint = m.group(1)
        if m := re.search(r"control endpoint (\S+)", line):
            control_endpoint = m.group(1)
        if "streaming" in line:
            break
    return node, endpoint, control_endpoint


def subscriber(endpoint: str, seconds: float) -> None:
    """Run as a child: count frames for `seconds`, print the count."""
    ctx = zmq.Context()
    sock = connect_frame_subscriber(ctx, endpoint, StreamOptions())
    sock.poll(10_000)
    count, end = 0, time.monotonic() + seconds
    while (remaining := end - time.monotonic()) > 0:
        if sock.poll(int(remaining * 1000) + 1):
            decode(sock.recv(copy=False).buffer)
            count += 1
    print(count)


def fan_out(subscribers: int, seconds: float) -> dict[str, float]:
    node, endpoint, _ = start_node("tcp://127.0.0.1:*")
    try:
        subs = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.backbone", "--subscriber", endpoint, str(seconds + 2)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(subscribers)
        ]
        time.sleep(1.0)  # let subscribers connect before the measured window
        tree = process_tree(node.pid)  # the node and its camera process
        c0, t0 = sum(map(cpu_seconds, tree)), time.monotonic()
        time.sleep(seconds)
        c1, t1 = sum(map(cpu_seconds, tree)), time.monotonic()
        counts = [int(s.communicate()[0]) for s in subs]
    finally:
        node.terminate()
        node.wait()
    return {
        "subscribers": subscribers,
        "node_cpu_percent": round(100 * (c1 - c0) / (t1 - t0), 1),
        "fps_per_subscriber": round(float(np.mean(counts)) / (seconds + 2), 1),
    }


def floor_percent() -> float:
    """Render + encode of the same test picture in one thread: what the node cannot go below."""
    pattern = TestPattern("cam1", 1280, 720)
    start = time.process_time()
    for i in range(150):
        jpeg.encode_bgr(pattern.render(i), 80)
    per_frame = (time.process_time() - start) / 150
    return round(100 * per_frame * 30, 1)


def slow_consumer(seconds: float, work: float = 0.1) -> dict[str, float]:
    node, _, control = start_node("tcp://127.0.0.1:*")
    try:
        ages = []
        with RemoteCapture(control, camera="cam1") as cap:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if cap.read()[0]:
                    ages.append(cap.age)
                time.sleep(work)  # the consumer's processing time
    finally:
        node.terminate()
        node.wait()
    a = np.array(ages) * 1000
    return {
        "processing_ms": work * 1000,
        "age_p50_ms": round(float(np.percentile(a, 50)), 1),
        "age_p99_ms": round(float(np.percentile(a, 99)), 1),
        "age_max_ms": round(float(a.max()), 1),
        "reads": len(a),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--subscriber", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        subscriber(args.subscriber[0], float(args.subscriber[1]))
        return
    results = {
        "machine_cores": os.cpu_count(),
        "floor_render_plus_encode_percent": floor_percent(),
        "fan_out": [fan_out(n, args.seconds) for n in (1, 4)],
        "slow_consumer": slow_consumer(args.seconds),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
