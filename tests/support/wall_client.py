"""A wall client in Python (aiohttp), as the page speaks it: for protocol tests, hostile input
and a deliberately slow reader beside a browser."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from framebus.capture_node.pattern import TestPattern
from framebus.common import jpeg
from tests.support.mjpeg_server import MjpegCamera
from tests.support.processes import NodeProcess, Processes, wait_until
from tests.test_web import cameras


@dataclass(frozen=True)
class WallFrame:
    camera: str
    seq: int
    age_ms: float
    jpeg: bytes
    arrived_ns: int


def unpack(data: bytes) -> WallFrame:
    n = int.from_bytes(data[:2], "big")
    head = json.loads(data[2 : 2 + n])
    return WallFrame(head["camera"], head["seq"], head["age_ms"], data[2 + n :], time.time_ns())


async def next_message(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> WallFrame | dict[str, Any]:
    """The next frame or status; AssertionError if the socket closed."""
    message = await ws.receive(timeout)
    if message.type == aiohttp.WSMsgType.BINARY:
        return unpack(message.data)
    if message.type == aiohttp.WSMsgType.TEXT:
        status: dict[str, Any] = json.loads(message.data)
        return status
    raise AssertionError(f"the wall closed: {message.type.name} {message.data} {message.extra}")


async def next_frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> WallFrame:
    deadline = time.monotonic() + timeout
    while True:
        got = await next_message(ws, max(0.01, deadline - time.monotonic()))
        if isinstance(got, WallFrame):
            return got


class PatternCameras:
    """MJPEG cameras serving the node's test picture, encoded once (quality 80, as the node
    would): the capture node passes their JPEGs through, so a wall of many cameras leaves the
    machine's cores to the browser and the viewer under test."""

    def __init__(self, names: tuple[str, ...], width: int, height: int, fps: float, frames: int = 30) -> None:
        self.urls: dict[str, str] = {}
        self._servers: list[MjpegCamera] = []
        for name in names:
            pattern = TestPattern(name, width, height)
            parts = [jpeg.encode_bgr(pattern.render(i, 0.0), 80) for i in range(frames)]
            server = MjpegCamera(fps, part=lambda i, parts=parts: parts[i % len(parts)])  # type: ignore[misc]
            self._servers.append(server)
            self.urls[name] = server.url

    def close(self) -> None:
        for server in self._servers:
            server.close()


def start_wall(
    nodes: Processes,
    tmp_path: Path,
    names: tuple[str, ...],
    width: int = 320,
    height: int = 240,
    fps: int = 30,
    sources: dict[str, str] | None = None,
) -> tuple[NodeProcess, str]:
    """A capture node with test-pattern cameras (or `sources`, by camera) and a web viewer;
    returns the viewer and its URL once every camera has a frame."""

    def camera(name: str) -> str:
        if sources:
            return f'[[camera]]\nid = "{name}"\nsource = "{sources[name]}"\n'
        return f'[[camera]]\nid = "{name}"\nwidth = {width}\nheight = {height}\nfps = {fps}\n'

    cams = "".join(camera(c) for c in names)
    config = tmp_path / "node.toml"
    config.write_text('[node]\ncontrol = "tcp://127.0.0.1:*"\n' + cams)
    _, control = nodes.capture("--config", str(config))
    viewer = nodes.worker("web", "--node", control, "--listen", "127.0.0.1:0")
    url = viewer.wait_for(r"web viewer on (http://\S+)").group(1)

    def all_have_frames() -> bool:
        shown = cameras(url)
        return len(shown) == len(names) and all(c["seq"] is not None for c in shown)

    wait_until(all_have_frames, 60, f"frames of {len(names)} cameras")
    return viewer, url


def count_lines(output: str, pattern: str) -> int:
    return len(re.findall(pattern, output))
