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

from tests.processes import NodeProcess, Processes, wait_until
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


def start_wall(
    nodes: Processes, tmp_path: Path, names: tuple[str, ...], width: int = 320, height: int = 240, fps: int = 30
) -> tuple[NodeProcess, str]:
    """A capture node with test-pattern cameras and a web viewer; returns the viewer and its URL
    once every camera has a frame."""
    cams = "".join(f'[[camera]]\nid = "{c}"\nwidth = {width}\nheight = {height}\nfps = {fps}\n' for c in names)
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
