"""`worker-node web` for real: Chromium (via Playwright), ffmpeg and raw HTTP clients."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zmq
from playwright.sync_api import sync_playwright

from framebus.common import jpeg
from framebus.common.protocol import (
    CameraInfo,
    DescribeReply,
    DescribeRequest,
    FrameHeader,
    decode,
    encode_describe_reply,
    encode_frame,
)
from tests.support.processes import NodeProcess, Processes, wait_until
from tests.test_metrics import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CAMERAS = ("left", "right/annotated")  # a derived-stream id too: '/' in URLs


def simulate_work(seconds: float) -> None:
    """A slow client's pause (the workload under test, not synchronisation)."""
    time.sleep(seconds)


def start_viewer(nodes: Processes, tmp_path: Path, width: int = 320, height: int = 240) -> tuple[NodeProcess, str]:
    """A node with two cameras and a web viewer on a free port; returns it and its base URL."""
    cams = "".join(f'[[camera]]\nid = "{c}"\nwidth = {width}\nheight = {height}\nfps = 30\n' for c in CAMERAS)
    config = tmp_path / "node.toml"
    config.write_text('[node]\ncontrol = "tcp://127.0.0.1:*"\n' + cams)
    _, control = nodes.capture("--config", str(config))
    viewer = nodes.worker("web", "--node", control, "--listen", "127.0.0.1:0")
    url = viewer.wait_for(r"web viewer on (http://\S+)").group(1)
    wait_until(lambda: all(c["seq"] is not None for c in cameras(url)) and len(cameras(url)) == 2, 20, "frames")
    return viewer, url


def png(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(image, dtype=np.int16)


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def cameras(url: str) -> list[dict[str, Any]]:
    status, _, body = get(url + "api/status")
    assert status == 200
    found: list[dict[str, Any]] = json.loads(body)["cameras"]
    return found


def clients(url: str) -> dict[str, int]:
    return {c["camera"]: c["clients"] for c in cameras(url)}


@pytest.mark.browser
def test_page_shows_every_camera_live_in_chromium(nodes: Processes, tmp_path: Path) -> None:
    viewer, url = start_viewer(nodes, tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            drawn = "(cams) => cams.every(c => (wallStats()[c] || {frames: 0}).frames > 0)"
            page.wait_for_function(drawn, arg=list(CAMERAS), timeout=20_000)
            for cam in CAMERAS:  # the frame's own size, shown 4:3 in a 16:9 tile
                assert page.evaluate("(c) => wallStats()[c].size", cam) == [320, 240]
            page.wait_for_function(
                "() => [...document.querySelectorAll('figcaption .fps')].every(e => parseFloat(e.textContent) > 0)",
                timeout=20_000,
            )
            for cam in CAMERAS:
                canvas = page.locator(f'figure[data-camera="{cam}"] .screen')  # where the wall draws it
                first = png(canvas.screenshot())
                assert first.std() > 20, f"{cam}: the tile is blank"

                def changed(canvas: Any = canvas, first: np.ndarray = first) -> bool:
                    shot = png(canvas.screenshot())
                    return shot.shape == first.shape and float(np.abs(shot - first).mean()) > 1.0

                wait_until(changed, 15, f"{cam}: the picture changing in the browser")
            assert clients(url) == {cam: 1 for cam in CAMERAS}
            caption = page.locator(f'figure[data-camera="{CAMERAS[0]}"] figcaption').inner_text()
            assert "streaming" in caption and "fps" in caption and "age" in caption, caption
        finally:
            browser.close()
    # The browser went away: its wall client is counted out.
    wait_until(lambda: clients(url) == {cam: 0 for cam in CAMERAS}, 10, "the page counted out")
    assert viewer.stop() < 1.5
    assert "Traceback" not in viewer.output


def test_ffmpeg_reads_frames_from_a_stream(nodes: Processes, tmp_path: Path) -> None:
    viewer, url = start_viewer(nodes, tmp_path)
    out = tmp_path / "ffmpeg"
    out.mkdir()
    run = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "mpjpeg", "-i", url + "cameras/right/annotated.mjpg",
         "-frames:v", "10", "-c:v", "copy", "-f", "image2", str(out / "frame%03d.jpg")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    files = sorted(out.iterdir())
    assert len(files) == 10, [f.name for f in files]
    for f in files:
        assert jpeg.decode_bgr(f.read_bytes()).shape == (240, 320, 3)
    assert len({f.read_bytes() for f in files}) == 10, "the same frame was sent twice"
    wait_until(lambda: clients(url)["right/annotated"] == 0, 10, "the ffmpeg client counted out")


def test_snapshot_status_and_page(nodes: Processes, tmp_path: Path) -> None:
    _, url = start_viewer(nodes, tmp_path)
    status, headers, body = get(url + "cameras/left.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert jpeg.decode_bgr(body).shape == (240, 320, 3)
    assert int(headers["X-Seq"]) >= 0
    assert get(url + "cameras/nope.jpg")[0] == 404
    assert get(url + "cameras/nope.mjpg")[0] == 404
    status, headers, body = get(url)
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"framebus" in body
    wait_until(lambda: all(c["fps"] > 0 for c in cameras(url)), 10, "fps measured")
    by_id = {c["camera"]: c for c in cameras(url)}
    assert set(by_id) == set(CAMERAS)
    left = by_id["left"]
    assert left["state"] == "streaming" and left["width"] == 320 and left["height"] == 240
    assert 0 <= left["age_ms"] < 1000 and left["clients"] == 0 and left["received"] > 0


class MjpegReader:
    """A deliberately plain HTTP/1.0 client (no chunking) that reads parts one by one."""

    def __init__(self, url: str, path: str, receive_buffer: int = 64 * 1024) -> None:
        host, port = url.split("//")[1].rstrip("/").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect((host, int(port)))
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        self.stream = self.sock.makefile("rb")
        assert b" 200 " in self.stream.readline()
        while self.stream.readline() not in (b"\r\n", b""):
            pass

    def part(self) -> dict[str, str]:
        assert self.stream.readline().strip() == b"--framebusframe"
        headers = {}
        while (line := self.stream.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        body = self.stream.read(int(headers["content-length"]))
        assert body[:2] == b"\xff\xd8" and self.stream.readline() == b"\r\n"
        return headers

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


@pytest.mark.parametrize("pause_s", [2.0])
def test_a_slow_client_gets_the_newest_frame_not_a_backlog(nodes: Processes, tmp_path: Path, pause_s: float) -> None:
    _, url = start_viewer(nodes, tmp_path, 640, 360)
    reader = MjpegReader(url, "/cameras/left.mjpg")
    try:
        before = int(reader.part()["x-seq"])
        simulate_work(pause_s)  # 30 fps: a queue would now hold ~60 frames for this client
        parts = 0
        while True:
            headers = reader.part()
            parts += 1
            age_ms = (time.time_ns() - int(headers["x-capture-ns"])) / 1e6
            if age_ms < 150:
                break
            assert parts < 20, f"still {age_ms:.0f} ms behind after {parts} parts: a backlog"
        skipped = int(headers["x-seq"]) - before - parts
        assert skipped >= 30, f"only {skipped} frames skipped during a {pause_s} s pause"
    finally:
        reader.close()
    wait_until(lambda: clients(url)["left"] == 0, 10, "the closed client counted out")


# ----------------------------------------------------------------------------- memory under camera churn


class ChurningNode(threading.Thread):
    """A node (real sockets, in this process) that answers every describe request with
    `per_round` cameras it never described before, each a real stream of big frames (a noisy
    1280x720 JPEG, ~1 MB): a viewer that kept every camera ever described, with its last
    frame, grew by ~`per_round` MB per round."""

    def __init__(self, per_round: int = 40) -> None:
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.endpoint = f"tcp://127.0.0.1:{self.control.bind_to_random_port('tcp://127.0.0.1')}"
        self.per_round = per_round
        self.rounds = 0
        self.picture = jpeg.encode_bgr(np.random.default_rng(1).integers(0, 256, (720, 1280, 3), np.uint8), 90)
        self.streams: dict[str, tuple[zmq.Socket, str]] = {}
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        seq = 0
        while not self.stopping.is_set():
            if self.control.poll(200, zmq.POLLIN):
                identity, request = self.control.recv_multipart()
                if isinstance(decode(request), DescribeRequest):
                    self.next_round(identity)
            seq += 1
            now = time.time_ns()
            for camera, (sock, _) in self.streams.items():
                sock.send(encode_frame(FrameHeader(camera, seq, now, now, 1280, 720), self.picture), zmq.NOBLOCK)
        for sock, _ in self.streams.values():
            sock.close(0)
        self.control.close(0)
        self.ctx.term()

    def next_round(self, identity: bytes) -> None:
        for sock, _ in self.streams.values():
            sock.close(0)
        self.rounds += 1
        self.streams = {}
        for i in range(self.per_round):
            sock = self.ctx.socket(zmq.PUB)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.CONFLATE, 1)
            port = sock.bind_to_random_port("tcp://127.0.0.1")
            self.streams[f"churn{self.rounds}-{i}"] = (sock, f"tcp://127.0.0.1:{port}")
        infos = tuple(
            CameraInfo(camera, endpoint, 1280, 720, 5.0, "streaming", "latest")
            for camera, (_, endpoint) in self.streams.items()
        )
        self.control.send_multipart([identity, encode_describe_reply(DescribeReply("churner", time.time_ns(), infos))])

    def close(self) -> None:
        self.stopping.set()
        self.join(10)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def test_memory_stays_bounded_while_a_node_describes_ever_new_cameras(nodes: Processes) -> None:
    node = ChurningNode()
    try:
        viewer = nodes.worker("web", "--node", node.endpoint, "--listen", "127.0.0.1:0")
        url = viewer.wait_for(r"web viewer on (http://\S+)").group(1)
        wait_until(lambda: node.rounds >= 5, 30, "5 describe rounds")
        wait_until(lambda: sum(c["seq"] is not None for c in cameras(url)) >= 20, 20, "frames of the churned cameras")
        before, rounds_before = rss(viewer.proc.pid), node.rounds
        wait_until(lambda: node.rounds >= rounds_before + 15, 60, "15 more rounds")
        after = rss(viewer.proc.pid)
        shown = len(cameras(url))
    finally:
        node.close()
    # The cameras of the last two rounds at most: the ones no longer described are dropped.
    assert shown <= 2 * node.per_round, f"{shown} cameras on the page"
    growth = (after - before) / 2**20
    assert growth < 40, f"RSS grew by {growth:.0f} MiB over 15 rounds of {node.per_round} new cameras"
    assert viewer.stop() < 2.0 and "Traceback" not in viewer.output
    print(f"\nweb viewer RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB over 15 rounds; {shown} cameras shown")


@pytest.mark.browser
def test_a_camera_without_frames_shows_why_and_does_not_keep_the_page_loading(nodes: Processes, tmp_path: Path) -> None:
    """One camera streams, one never can (its RTSP server is not there): the broken camera's tile
    says why in words (not only in a tooltip), and nothing waits for it (an MJPEG <img> that
    waits for a first frame kept the page loading for ever: the page has none)."""
    dead = f"rtsp://127.0.0.1:{free_port()}/nothing"
    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\ncontrol = "tcp://127.0.0.1:*"\n'
        '[[camera]]\nid = "live"\nwidth = 320\nheight = 240\nfps = 10\n'
        f'[[camera]]\nid = "dead"\nsource = "{dead}"\n'
    )
    _, control = nodes.capture("--config", str(config))
    viewer = nodes.worker("web", "--node", control, "--listen", "127.0.0.1:0")
    url = viewer.wait_for(r"web viewer on (http://\S+)").group(1)
    wait_until(
        lambda: {c["camera"]: c for c in cameras(url)}.get("dead", {}).get("reason"), 30, "the dead camera's reason"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto(url, wait_until="load", timeout=15_000)
            dead_tile = page.locator('figure[data-camera="dead"]')
            dead_tile.locator(".reason").wait_for(state="visible", timeout=10_000)
            reason = dead_tile.locator(".reason").inner_text()
            dead_status = {c["camera"]: c for c in cameras(url)}["dead"]
            assert reason and reason == dead_status["reason"], reason
            waiting = dead_tile.locator(".waiting").inner_text()
            # Its state in the picture's place.
            assert waiting.splitlines() == [dead_status["state"].upper(), "no frame yet"], waiting
            # No request left pending for ever (the tab's spinner) for a camera that has nothing to send.
            assert not [u for u in requested if "/cameras/" in u], requested
            page.wait_for_function("() => (wallStats().live || {frames: 0}).frames > 0", timeout=20_000)
            assert page.evaluate("wallStats().dead.frames") == 0
            assert page.evaluate("document.readyState") == "complete"
            shot = tmp_path / "dead-and-live.png"
            page.screenshot(path=str(shot))
            print(f"\nscreenshot: {shot}")
        finally:
            browser.close()
    assert viewer.stop() < 2.0
