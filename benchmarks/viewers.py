"""Viewer figures: CPU of the web viewer serving 4 cameras to 4 clients, and of the display
showing a 4-camera mosaic.

    .venv/bin/python benchmarks/viewers.py [--seconds 20]

Cameras: one capture node with four 1280x720 test-picture cameras at 30 fps (quality 80,
~130 KB frames). Web clients: (a) 4 headless Chromium pages (Debian chromium through
Playwright), each showing all 4 cameras (over the wall's WebSocket since the wall; before it,
16 MJPEG streams), and (b) 4 plain HTTP clients per
camera that read and discard the streams (16 streams, no rendering: the viewer's cost at full
delivery, with the CPU left to it). Display: `worker-node display` of the 4 cameras as a
1280x720 mosaic on Xvfb (1920x1080 screen). CPU is user + system time of the worker process
over the measured window, in % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support.xvfb

from tests.support.processes import NodeProcess  # noqa: E402
from tests.support.xvfb import VirtualScreen  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
CAMERAS = ("cam1", "cam2", "cam3", "cam4")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def cpu_seconds(pid: int) -> float:
    """User + system time of the process and of its live child processes."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def capture_node(tmp: Path) -> tuple[NodeProcess, str]:
    config = tmp / "node.toml"
    cams = "".join(f'[[camera]]\nid = "{c}"\nwidth = 1280\nheight = 720\nfps = 30\n' for c in CAMERAS)
    config.write_text('[node]\ncontrol = "tcp://127.0.0.1:*"\n' + cams)
    node = NodeProcess([sys.executable, "-m", "capture_node", "--config", str(config)])
    return node, node.wait_for(r"control endpoint (\S+)").group(1)


def measure(pid: int, seconds: float) -> tuple[float, float]:
    """(% of one core, seconds measured)."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # the measured window
    c1, t1 = cpu_seconds(pid), time.monotonic()
    return 100 * (c1 - c0) / (t1 - t0), t1 - t0


def status(url: str) -> dict[str, dict[str, float]]:
    with urllib.request.urlopen(url + "api/status", timeout=10) as reply:
        return {c["camera"]: c for c in json.loads(reply.read())["cameras"]}


def start_web(control: str) -> tuple[NodeProcess, str]:
    web = NodeProcess([sys.executable, "-m", "worker_node", "web", "--node", control, "--listen", "127.0.0.1:0"])
    url = web.wait_for(r"web viewer on (http://\S+)").group(1)
    deadline = time.monotonic() + 20
    while len(status(url)) < len(CAMERAS) or any(c["seq"] is None for c in status(url).values()):
        if time.monotonic() > deadline:
            raise RuntimeError("the web viewer got no frames")
        time.sleep(0.2)
    return web, url


def sent_rate(url: str, window: float, before: dict[str, dict[str, float]]) -> float:
    """Frames per second per stream, all cameras and clients together / 16 streams."""
    after = status(url)
    sent = sum(after[c]["sent"] - before[c]["sent"] for c in CAMERAS)
    return sent / window / 16


def web_with_chromium(control: str, seconds: float) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    web, url = start_web(control)
    try:
        with sync_playwright() as p:
            browsers = [
                p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
                for _ in range(4)
            ]
            for browser in browsers:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(url)
                page.wait_for_function(
                    "() => { const s = Object.values(wallStats()); return s.length === 4 && s.every(x => x.frames > 0) }",
                    timeout=30_000,
                )
            time.sleep(2)  # let streams settle before the measured window
            before = status(url)
            cpu, window = measure(web.proc.pid, seconds)
            fps = sent_rate(url, window, before)
            for browser in browsers:
                browser.close()
    finally:
        web.stop()
    return {"web_viewer_cpu_percent": round(cpu, 1), "fps_per_stream": round(fps, 1)}


async def _read_streams(url: str, seconds: float) -> None:
    host, port = url.split("//")[1].rstrip("/").split(":")

    async def one(camera: str) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /cameras/{camera}.mjpg HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        end = time.monotonic() + seconds
        while time.monotonic() < end and await reader.read(1 << 20):
            pass
        writer.close()

    await asyncio.gather(*(one(c) for c in CAMERAS for _ in range(4)))


def web_with_http_clients(control: str, seconds: float) -> dict[str, float]:
    web, url = start_web(control)
    try:
        readers = subprocess.Popen([sys.executable, __file__, "--read-streams", url, str(seconds + 4)])
        time.sleep(2)
        before = status(url)
        cpu, window = measure(web.proc.pid, seconds)
        fps = sent_rate(url, window, before)
        readers.wait(30)
    finally:
        web.stop()
    return {"web_viewer_cpu_percent": round(cpu, 1), "fps_per_stream": round(fps, 1)}


def display(control: str, seconds: float) -> dict[str, float]:
    with VirtualScreen(1920, 1080) as screen:
        os.environ["DISPLAY"] = screen.display  # the display process inherits it
        worker = NodeProcess([sys.executable, "-m", "worker_node", "display", "--node", control, "--size", "1280x720"])
        for camera in CAMERAS:
            worker.wait_for(rf"camera {camera}: subscribed")
        time.sleep(2)
        cpu, _ = measure(worker.proc.pid, seconds)
        worker.stop()
    drawn = re.search(r"\(([\d.]+) per second\)", worker.output)
    return {"display_cpu_percent": round(cpu, 1), "mosaics_per_second": float(drawn[1]) if drawn else -1}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--read-streams", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read_streams:
        asyncio.run(_read_streams(args.read_streams[0], float(args.read_streams[1])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        node, control = capture_node(Path(tmp))
        try:
            node.wait_for(r"camera cam4: streaming")
            time.sleep(1)
            node_cpu, _ = measure(node.proc.pid, 5)
            results: dict[str, object] = {
                "machine_cores": os.cpu_count(),
                "capture_node_cpu_percent_4x720p30": round(node_cpu, 1),
            }
            for name, run in (
                ("web_4_cameras_to_4_chromium_pages", web_with_chromium),
                ("web_4_cameras_to_4_http_clients_each", web_with_http_clients),
                ("display_4_camera_mosaic_1280x720", display),
            ):
                print(f"measuring {name} for {args.seconds:g} s", file=sys.stderr)
                results[name] = run(control, args.seconds)
        finally:
            node.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
