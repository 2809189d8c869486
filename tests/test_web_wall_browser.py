"""The wall in headless Chromium: 16 cameras live in one page, a throttled page and a slow
reader beside it, enlarging a tile, and tiles scrolled out of view paused."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.processes import Processes, hold, wait_until
from tests.test_web import CHROMIUM, CHROMIUM_ARGS, clients
from tests.wall_client import PatternCameras, WallFrame, next_message, start_wall

SIXTEEN = tuple(f"cam{i:02d}" for i in range(16))
FPS = 10
MIN_FPS = 9.0  # every tile, over the window
WINDOW_S = 20.0


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_wall(browser: Browser, url: str, width: int = 1280, height: int = 800) -> Page:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    return page


def stats(page: Page) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = page.evaluate("wallStats()")
    return found


def drawn_fps(page: Page, seconds: float) -> tuple[dict[str, float], int]:
    """Frames drawn per second per camera over a window of `seconds`, and status messages in it."""
    before, started = stats(page), time.monotonic()
    hold(seconds)  # the measurement window
    after, elapsed = stats(page), time.monotonic() - started
    fps = {c: (after[c]["frames"] - before[c]["frames"]) / elapsed for c in SIXTEEN}
    statuses = max(a["status"] for a in after.values()) - max(b["status"] for b in before.values())
    return fps, statuses


class SlowReader(threading.Thread):
    """A wall client in Python that wants every camera and takes 0.5 s over each frame: it
    reads its socket only that often, so anything sent it faster would pile up."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.frames: list[WallFrame] = []
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        asyncio.run(self._read())

    async def _read(self) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.url + "wall") as ws:
            await ws.send_str("want " + " ".join(SIXTEEN))
            while not self.stopping.is_set():
                message = await next_message(ws)
                if isinstance(message, WallFrame):
                    self.frames.append(message)
                    await asyncio.sleep(0.5)  # the slow consumer's work, not synchronisation
                    await ws.send_str(f"ack {message.camera}")


@pytest.fixture
def sixteen_cameras() -> Iterator[PatternCameras]:
    cameras = PatternCameras(SIXTEEN, 640, 360, FPS)
    yield cameras
    cameras.close()


def test_sixteen_cameras_live_in_one_page_and_a_slow_client_slows_no_one(
    nodes: Processes, tmp_path: Path, sixteen_cameras: PatternCameras
) -> None:
    viewer, url = start_wall(nodes, tmp_path, SIXTEEN, sources=sixteen_cameras.urls)
    with chromium() as browser:
        page = open_wall(browser, url)
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.wait_for_function(
            "(n) => Object.values(wallStats()).filter(s => s.frames > 0).length === n", arg=16, timeout=30_000
        )
        alone, statuses = drawn_fps(page, WINDOW_S)
        shot = tmp_path / "wall-16-cameras.png"
        page.screenshot(path=str(shot))
        print(f"\nscreenshot: {shot}")
        print("fps alone: " + " ".join(f"{c}={f:.1f}" for c, f in alone.items()))
        slow = [c for c, f in alone.items() if f < MIN_FPS]
        assert not slow, f"tiles under {MIN_FPS} fps over {WINDOW_S:g} s: { {c: round(alone[c], 1) for c in slow} }"
        assert statuses >= WINDOW_S * 0.8, f"only {statuses} status updates in {WINDOW_S:g} s"
        assert not requests, f"the page asked for more than its one socket: {requests}"

        throttled = open_wall(browser, url)
        browser_cdp = throttled.context.new_cdp_session(throttled)
        browser_cdp.send("Emulation.setCPUThrottlingRate", {"rate": 20})
        reader = SlowReader(url)
        try:
            throttled.wait_for_function("() => Object.values(wallStats()).some(s => s.frames > 0)", timeout=30_000)
            wait_until(lambda: len(reader.frames) >= 4, 30, "the slow reader's first frames")
            beside, _ = drawn_fps(page, WINDOW_S / 2)
            throttled_fps, _ = drawn_fps(throttled, 5)
        finally:
            reader.stopping.set()
        print("fps beside a throttled page and a slow reader: " + " ".join(f"{c}={f:.1f}" for c, f in beside.items()))
        slowed = {c: round(f, 1) for c, f in beside.items() if f < MIN_FPS}
        assert not slowed, f"tiles slowed by the others: {slowed} (alone: min {min(alone.values()):.1f} fps)"
        # The slow ones really were slow, and what they got was new, not a backlog.
        assert sum(throttled_fps.values()) < 0.8 * sum(beside.values()), (throttled_fps, beside)
        assert len(reader.frames) < 5 * WINDOW_S, len(reader.frames)
        ages = sorted(f.age_ms for f in reader.frames)
        assert ages[len(ages) // 2] < 500, f"the slow reader's frames were old when sent: {ages}"
    reader.join(15)
    wait_until(lambda: all(n == 0 for n in clients(url).values()), 15, "every page counted out")
    assert "Traceback" not in viewer.output


def test_click_enlarges_one_camera_and_hidden_tiles_are_paused(nodes: Processes, tmp_path: Path) -> None:
    _, url = start_wall(nodes, tmp_path, SIXTEEN[:8], 320, 180, FPS)
    with chromium() as browser:
        page = open_wall(browser, url, 1280, 800)
        page.wait_for_function("() => Object.values(wallStats()).filter(s => s.frames > 0).length === 8")
        wait_until(lambda: set(clients(url).values()) == {1}, 10, "every tile wanted")
        page.locator('figure[data-camera="cam03"]').click()
        wait_until(lambda: clients(url) == {c: int(c == "cam03") for c in SIXTEEN[:8]}, 10, "only cam03 wanted")
        box = page.locator('figure[data-camera="cam03"] canvas').bounding_box()
        assert box and box["width"] > 1000, box  # the whole window
        shot = tmp_path / "wall-enlarged.png"
        page.screenshot(path=str(shot))
        print(f"\nscreenshot: {shot}")
        page.keyboard.press("Escape")
        wait_until(lambda: set(clients(url).values()) == {1}, 10, "every tile wanted again")
        page.locator('figure[data-camera="cam05"]').click()
        wait_until(lambda: clients(url)["cam00"] == 0, 10, "cam05 enlarged")
        page.locator('figure[data-camera="cam05"]').click()  # a second click goes back too
        wait_until(lambda: set(clients(url).values()) == {1}, 10, "every tile wanted after the second click")

        small = open_wall(browser, url, 300, 260)  # room for about two tiles: the rest scroll
        small.wait_for_function("() => Object.values(wallStats()).some(s => s.frames > 0)")
        wait_until(lambda: 1 <= sum(n == 2 for n in clients(url).values()) <= 3, 10, "only visible tiles wanted")
        small.evaluate("document.getElementById('grid').scrollTo(0, 1e6)")
        wait_until(lambda: clients(url)["cam07"] == 2 and clients(url)["cam00"] == 1, 10, "the scrolled-to tiles")
