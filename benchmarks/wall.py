"""The wall's cost in the web viewer: CPU per client-camera (docs/web.md).

    python -m benchmarks.wall [--cameras 16] [--clients 0 1 4 8] [--seconds 20] [--chromium]

Cameras: one capture node with N MJPEG cameras serving the node's own 640x360 test picture
at 10 fps, JPEG-encoded once (quality 80, ~35 KB; the node passes them through), so the
machine's cores go to the viewer and its clients. Clients: Python wall clients (aiohttp, in
one helper process) that want every camera and ack each frame on arrival: the viewer's cost
at full delivery. With --chromium, one headless Chromium page too (the page as people see
it), with the browser's own CPU per frame drawn, by process and thread. Measured over the window: the viewer process's CPU (user + system), the frames it sent,
and from those the CPU per client-camera (% of one core) and per frame sent (ms); 0 clients is
the viewer receiving alone, and the CPU each client-camera adds comes from the runs with the
fewest and the most clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.*

from benchmarks.measure import TICKS, MachineSample, cpu_seconds, process_tree  # noqa: E402
from benchmarks.viewers import CHROMIUM_ARGS  # noqa: E402  (the same browser as the other viewer benchmark)
from tests.support.processes import NodeProcess  # noqa: E402
from tests.support.wall_client import PatternCameras, WallFrame, next_message  # noqa: E402

FPS = 10


def status(url: str) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(url + "api/status", timeout=10) as reply:
        return {c["camera"]: c for c in json.loads(reply.read())["cameras"]}


def start(tmp: Path, cameras: PatternCameras) -> tuple[NodeProcess, NodeProcess, str, str]:
    config = tmp / "node.toml"
    cams = "".join(f'[[camera]]\nid = "{c}"\nsource = "{u}"\n' for c, u in cameras.urls.items())
    config.write_text('[node]\ncontrol = "tcp://127.0.0.1:*"\n' + cams)
    node = NodeProcess([sys.executable, "-m", "capture_node", "--config", str(config)])
    control = node.wait_for(r"control endpoint (\S+)").group(1)
    web = NodeProcess([sys.executable, "-m", "worker_node", "web", "--node", control, "--listen", "127.0.0.1:0"])
    url = web.wait_for(r"web viewer on (http://\S+)").group(1)
    deadline = time.monotonic() + 60
    while len(status(url)) < len(cameras.urls) or any(c["seq"] is None for c in status(url).values()):
        if time.monotonic() > deadline:
            raise RuntimeError("the web viewer got no frames")
        time.sleep(0.2)  # poll interval
    return node, web, url, control


async def _clients(url: str, count: int, seconds: float) -> None:
    """`count` wall clients that want every camera and ack each frame at once."""
    import aiohttp

    names = sorted(status(url))

    async def one(session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(url + "wall", max_msg_size=0) as ws:
            await ws.send_str("want " + " ".join(names))
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                message = await next_message(ws)
                if isinstance(message, WallFrame):
                    await ws.send_str(f"ack {message.camera}")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session) for _ in range(count)))


def measure(web: NodeProcess, url: str, seconds: float, client_cameras: int) -> dict[str, float]:
    time.sleep(3)  # let the clients settle before the measured window
    before, cpu0, machine0, t0 = status(url), cpu_seconds(web.proc.pid), MachineSample.take(), time.monotonic()
    time.sleep(seconds)  # the measured window
    after, cpu1, machine1, t1 = status(url), cpu_seconds(web.proc.pid), MachineSample.take(), time.monotonic()
    window = t1 - t0
    sent = sum(after[c]["sent"] - before[c]["sent"] for c in after)
    cpu = 100 * (cpu1 - cpu0) / window
    found = {
        "viewer_cpu_percent": round(cpu, 1),
        "machine_busy_percent": round(machine1.busy_percent_since(machine0), 1),
    }
    if client_cameras:
        found["fps_per_client_camera"] = round(sent / window / client_cameras, 2)
        found["viewer_cpu_percent_per_client_camera"] = round(cpu / client_cameras, 3)
        found["viewer_cpu_ms_per_frame_sent"] = round(1000 * (cpu1 - cpu0) / max(sent, 1), 3)
    return found


def with_python_clients(web: NodeProcess, url: str, cameras: int, count: int, seconds: float) -> dict[str, float]:
    if count == 0:  # receiving only: what the viewer costs before any client
        return measure(web, url, seconds, 0)
    argv = [sys.executable, "-m", "benchmarks.wall", "--run-clients", url, str(count), str(seconds + 6)]
    clients = NodeProcess(argv)
    try:
        return measure(web, url, seconds, cameras * count)
    finally:
        clients.stop()


def marginal(results: dict[str, Any], cameras: int, counts: list[int]) -> dict[str, float]:
    """CPU each client-camera adds, from the runs with the fewest and the most clients."""
    low, high = min(counts, default=0), max(counts, default=0)
    if low == high:
        return {}
    cpu = {n: results[f"{n}_python_clients"]["viewer_cpu_percent"] for n in (low, high)}
    return {"viewer_cpu_percent_added_per_client_camera": round((cpu[high] - cpu[low]) / ((high - low) * cameras), 3)}


def chromium_threads() -> Counter[str]:
    """CPU seconds of this benchmark's Chromium, by process kind and thread name."""
    seconds: Counter[str] = Counter()
    for pid in process_tree(os.getpid()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()  # Chromium rewrites it: spaces, not NULs
        except OSError:
            continue
        if b"chromium" not in command.split(b"\0")[0].split(b" ")[0]:
            continue
        found = re.search(rb"--type=([\w-]+)", command)
        kind = found.group(1).decode() if found else "browser"
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                name = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            seconds[f"{kind}/{name}"] += (int(fields[11]) + int(fields[12])) / TICKS
    return seconds


def run_viewer(folder: Path, argv: list[str]) -> int:
    """`worker-node web ARGV` serving the page and its worker from `folder` (--pages)."""
    from aiohttp import web as aioweb

    from framebus.worker_node import cli, web

    def static_file(name: str, content_type: str) -> Any:
        async def serve(_request: aioweb.Request) -> aioweb.Response:
            text = (folder / name).read_text(encoding="utf-8")
            return aioweb.Response(text=text, content_type=content_type, headers={"Cache-Control": "no-cache"})

        return serve

    web.static_file = static_file  # type: ignore[assignment]
    return cli.main(["web", *argv])


def page_viewer(control: str, folder: Path) -> tuple[NodeProcess, str]:
    """A viewer of the node that serves the page in `folder`, and its URL."""
    argv = [sys.executable, "-m", "benchmarks.wall", "--run-viewer", str(folder), "--node", control]
    web = NodeProcess([*argv, "--listen", "127.0.0.1:0"])
    url = web.wait_for(r"web viewer on (http://\S+)").group(1)
    deadline = time.monotonic() + 60
    while any(c["seq"] is None for c in status(url).values()) or not status(url):
        if time.monotonic() > deadline:
            raise RuntimeError("the web viewer got no frames")
        time.sleep(0.2)  # poll interval
    return web, url


def with_chromium(web: NodeProcess, url: str, cameras: int, seconds: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.wait_for_function(
                "(n) => Object.values(wallStats()).filter(s => s.frames > 0).length === n", arg=cameras, timeout=60_000
            )
            # Timed by the page's clock (tests/test_web_wall_browser.py, drawn_fps, says why).
            taken = "() => [performance.now(), wallStats()]"
            threads0, (start, drawn0) = chromium_threads(), page.evaluate(taken)
            found: dict[str, Any] = measure(web, url, seconds, cameras)
            threads1, (end, drawn1) = chromium_threads(), page.evaluate(taken)
        finally:
            browser.close()
    window = (end - start) / 1000  # measure() lets the page settle 3 s first: both samples span it
    drawn = sum(drawn1[c]["frames"] - drawn0[c]["frames"] for c in drawn1)
    used = {name: threads1[name] - threads0.get(name, 0.0) for name in threads1}
    total = sum(used.values())
    per_tile = [(drawn1[c]["frames"] - drawn0[c]["frames"]) / window for c in drawn1]
    found["page_fps_per_tile"] = round(drawn / window / cameras, 2)
    found["page_fps_slowest_tile"] = round(min(per_tile), 2)
    found["chromium_cpu_percent"] = round(100 * total / window, 1)
    found["chromium_cpu_ms_per_frame_drawn"] = round(1000 * total / max(drawn, 1), 2)
    top = sorted(used.items(), key=lambda item: -item[1])[:8]
    found["chromium_cpu_ms_per_frame_by_thread"] = {name: round(1000 * s / max(drawn, 1), 2) for name, s in top}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=16)
    parser.add_argument("--clients", type=int, nargs="*", default=[0, 1, 4, 8], help="0: receiving only; none: none")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--chromium", action="store_true", help="also one headless Chromium page")
    parser.add_argument(
        "--pages", nargs="+", type=Path, default=[], metavar="DIR",
        help="with --chromium: pages (folders with index.html and wall-worker.js) to compare, in turn",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="with --pages: times each page is measured, alternating")
    parser.add_argument("--run-clients", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--run-viewer", type=Path, help=argparse.SUPPRESS)
    args, viewer_args = parser.parse_known_args()
    if args.run_viewer:
        sys.exit(run_viewer(args.run_viewer, viewer_args))
    if viewer_args:
        parser.error(f"unrecognized arguments: {' '.join(viewer_args)}")
    if args.run_clients:
        url, count, seconds = args.run_clients
        asyncio.run(_clients(url, int(count), float(seconds)))
        return
    names = tuple(f"cam{i:02d}" for i in range(args.cameras))
    cameras = PatternCameras(names, 640, 360, FPS)
    results: dict[str, Any] = {"cameras": f"{args.cameras} x 640x360 @ {FPS} fps, ~35 KB JPEGs"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            node, web, url, control = start(Path(tmp), cameras)
            try:
                for count in args.clients:
                    print(f"{count} Python wall clients x {args.cameras} cameras, {args.seconds:g} s", file=sys.stderr)
                    results[f"{count}_python_clients"] = with_python_clients(
                        web, url, args.cameras, count, args.seconds
                    )
                results.update(marginal(results, args.cameras, args.clients))
                if args.chromium and not args.pages:
                    print(f"1 Chromium page x {args.cameras} cameras, {args.seconds:g} s", file=sys.stderr)
                    results["1_chromium_page"] = with_chromium(web, url, args.cameras, args.seconds)
                if args.pages:
                    web.stop()  # one viewer at a time, serving the page measured
                for round_ in range(args.rounds if args.pages else 0):  # A B A B: the machine's load shared alike
                    for folder in args.pages:
                        print(f"round {round_ + 1}: the page in {folder}, {args.seconds:g} s", file=sys.stderr)
                        web, url = page_viewer(control, folder)
                        try:
                            found = with_chromium(web, url, args.cameras, args.seconds)
                        finally:
                            web.stop()
                        results.setdefault(f"chromium_page {folder}", []).append(found)
                        print(json.dumps({str(folder): found}), file=sys.stderr)
            finally:
                web.stop()
                node.stop()
    finally:
        cameras.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
