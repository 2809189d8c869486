"""Capture node CPU per RTSP camera (decode + JPEG encode + publish), 720p30 and 1080p30.

    .venv/bin/python benchmarks/rtsp_cpu.py [--seconds 20]

The RTSP server (tests/support/rtsp_server.py, GStreamer) streams a loop of natural-looking pictures
(the ball pattern is ~97 % black and decodes unrealistically cheaply). CPU is the sum over the
node's process and its camera processes, with one subscriber receiving every frame.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import zmq

from framebus.capture_node.pattern import TestPattern
from framebus.common.sockets import StreamOptions, connect_frame_subscriber

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children (the camera processes)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def natural_pictures(folder: Path, width: int, height: int, count: int = 90) -> None:
    pattern = TestPattern("bench", width, height)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), pattern.render(i), [cv2.IMWRITE_JPEG_QUALITY, 95])


def measure(width: int, height: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        natural_pictures(Path(tmp), width, height)
        server = subprocess.Popen(
            [
                "/usr/bin/python3",
                str(ROOT / "tests/support/rtsp_server.py"),
                "--source",
                "images",
                "--images-dir",
                tmp,
                "--width",
                str(width),
                "--height",
                str(height),
                "--fps",
                "30",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        url = server.stdout.readline().split()[1]  # type: ignore[union-attr]
        node = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "capture_node",
                "--control",
                "tcp://127.0.0.1:*",
                "--source",
                url,
                "--camera-id",
                "cam",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        endpoint = ""
        for line in node.stderr:  # type: ignore[union-attr]
            if m := re.search(r"frames on (\S+)", line):
                endpoint = m.group(1)
            if "streaming" in line:
                break
        ctx = zmq.Context()
        sub = connect_frame_subscriber(ctx, endpoint, StreamOptions())
        try:
            sub.poll(10_000)
            warm_end = time.monotonic() + 3
            while time.monotonic() < warm_end:
                sub.recv() if sub.poll(100) else None
            c0, t0, frames = tree_cpu_seconds(node.pid), time.monotonic(), 0
            while time.monotonic() - t0 < seconds:
                if sub.poll(100):
                    sub.recv()
                    frames += 1
            c1, t1 = tree_cpu_seconds(node.pid), time.monotonic()
        finally:
            sub.close(0)
            ctx.term()
            node.terminate()
            node.wait()
            server.terminate()
            server.wait()
    return {
        "resolution": f"{width}x{height}",
        "fps_received": round(frames / (t1 - t0), 1),
        "node_cpu_percent": round(100 * (c1 - c0) / (t1 - t0), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    print(json.dumps([measure(1280, 720, args.seconds), measure(1920, 1080, args.seconds)], indent=2))


if __name__ == "__main__":
    main()
