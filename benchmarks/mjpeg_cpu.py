"""Capture CPU of HTTP MJPEG cameras (passed through) against the transport alone.

    python -m benchmarks.mjpeg_cpu [--cameras 4] [--seconds 15]

An MJPEG server process sends pre-encoded 1280x720 JPEGs of the benchmark clip (quality 80,
~130 KB, 30 fps) to every client. Measured, one after the other, with one subscriber per
camera (benchmarks/cameras.py's subscriber process):
- the capture node with N cameras on that URL (CPU of its process tree);
- the transport alone: N processes that only read the HTTP stream into parts
  (capture_node/mjpeg.py) and send each part on a ZeroMQ PUB socket: what passing JPEGs
  through cannot go below.
Run it from an older checkout (PYTHONPATH) to measure the node that decoded and re-encoded.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.cameras import CaptureNode, tree_cpu
from benchmarks.measure import MachineSample, cpu_seconds
from benchmarks.processes import REPO, Helper
from benchmarks.source_clip import FPS, HEIGHT, QUALITY, WIDTH, render_frames

BOUNDARY = "frame"


def serve(frames: int) -> None:
    """The MJPEG camera: every client gets the clip's JPEGs at 30 fps, looped."""
    from framebus.common import jpeg

    parts = [jpeg.encode_bgr(image, QUALITY) for image in render_frames(frames, WIDTH, HEIGHT)]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.end_headers()
            next_at, index = time.monotonic(), 0
            try:
                while True:
                    data = parts[index % len(parts)]
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                    self.wfile.write(head.encode() + data + b"\r\n")
                    index += 1
                    next_at += 1 / FPS
                    time.sleep(max(0.0, next_at - time.monotonic()))  # pacing at 30 fps
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    _emit({"url": f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"})
    server.serve_forever()


def transport(url: str) -> None:
    """Read the stream into parts and send each on a PUB socket: nothing else."""
    import zmq

    from framebus.capture_node.mjpeg import MjpegStream

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    _emit({"endpoint": f"tcp://127.0.0.1:{port}"})
    stream = MjpegStream(url, 5.0, 5.0)
    from framebus.common.protocol import FrameHeader, encode_frame

    seq = 0
    while (data := stream.read()) is not None:
        pub.send(encode_frame(FrameHeader("cam", seq, time.time_ns(), time.time_ns(), WIDTH, HEIGHT), data))
        seq += 1


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def window(pids: list[int], endpoints: list[str], seconds: float, work: Path, name: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.cameras", "subscribe", "--seconds", str(seconds), *endpoints]
    sub = Helper(f"subscribers-{name}", argv, work)
    try:
        sub.wait_for("window_start", timeout=90)
        cpu0, mach0, t0 = sum(tree_cpu(p) for p in pids), MachineSample.take(), time.monotonic()
        fps = sub.wait_for("fps", timeout=seconds + 30)
        cpu1, mach1, t1 = sum(tree_cpu(p) for p in pids), MachineSample.take(), time.monotonic()
    finally:
        sub.stop()
    percent = 100 * (cpu1 - cpu0) / (t1 - t0)
    return {
        "what": name,
        "cameras": len(endpoints),
        "fps_min": min(fps),
        "cpu_percent": round(percent, 1),
        "cpu_per_camera_percent": round(percent / len(endpoints), 2),
        "ms_per_frame": round(1000 * (cpu1 - cpu0) / max(1.0, sum(fps) * (t1 - t0)), 3),
        "machine_busy_percent": round(mach1.busy_percent_since(mach0), 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.mjpeg_cpu", description=__doc__)
    sub = p.add_subparsers(dest="role")
    sub.add_parser("serve").add_argument("--frames", type=int, default=30)
    sub.add_parser("transport").add_argument("url")
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--label", default="framebus", help="names this checkout in the output")
    p.add_argument("--out", type=Path, default=REPO / "bench-results")
    args = p.parse_args(argv)
    if args.role == "serve":
        serve(args.frames)
        return 0
    if args.role == "transport":
        transport(args.url)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    work = args.out / "work" / "mjpeg"
    work.mkdir(parents=True, exist_ok=True)
    server = Helper("mjpeg-server", [sys.executable, "-m", "benchmarks.mjpeg_cpu", "serve"], work)
    results = []
    try:
        url = server.wait_for("url", timeout=60)
        node = CaptureNode([url] * args.cameras, work, "node-mjpeg")
        try:
            results.append(window([node.proc.pid], node.wait_endpoints(), args.seconds, work, f"{args.label} node"))
        finally:
            node.stop()
        helpers = [
            Helper(f"transport-{i}", [sys.executable, "-m", "benchmarks.mjpeg_cpu", "transport", url], work)
            for i in range(args.cameras)
        ]
        try:
            endpoints = [h.wait_for("endpoint") for h in helpers]
            results.append(window([h.pid for h in helpers], endpoints, args.seconds, work, "transport alone"))
        finally:
            for h in helpers:
                h.stop()
        results.append({"what": "MJPEG server", "cpu_s_total": round(cpu_seconds(server.pid), 1)})
    finally:
        server.stop()
    text = json.dumps(results, indent=2)
    (args.out / f"mjpeg-{args.label}.json").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
