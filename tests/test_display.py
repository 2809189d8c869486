"""`worker-node display`: the checks before a window opens, and the window for real (Qt on Xvfb,
read back with screenshots)."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import mss
import numpy as np
import pytest

from framebus.worker_node import mosaic
from framebus.worker_node.display import display_problem, gui_problem
from tests.support.pictures import HEIGHT, WIDTH, write_sliding_square
from tests.support.processes import Processes, wait_until
from tests.support.xvfb import VirtualScreen

TITLE = "framebus-test"
SIZE = (640, 360)
CAMERAS = ("a-red", "b-green")  # the mosaic orders tiles by camera id


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> Iterator[VirtualScreen]:
    with VirtualScreen(1280, 720) as virtual:
        monkeypatch.setenv("DISPLAY", virtual.display)  # node processes inherit it
        yield virtual


def window_position(screen: VirtualScreen) -> tuple[int, int]:
    """Where the X server put the window (there is no window manager to ask)."""
    out = subprocess.run(
        ["xdotool", "search", "--sync", "--onlyvisible", "--name", f"^{TITLE}$", "getwindowgeometry"],
        env={"DISPLAY": screen.display, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    m = re.search(r"Position: (-?\d+),(-?\d+)", out.stdout)
    assert m, f"xdotool: {out.returncode} {out.stdout} {out.stderr}"
    return int(m[1]), int(m[2])


def grab(screen: VirtualScreen, x: int, y: int) -> np.ndarray:
    with mss.MSS(display=screen.display) as shooter:
        shot = shooter.grab({"left": x, "top": y, "width": SIZE[0], "height": SIZE[1]})
    return np.asarray(shot)[:, :, :3].astype(int)  # BGRA -> BGR


def picture(shot: np.ndarray, index: int) -> np.ndarray:
    """The camera picture inside tile `index` (letterboxed, below the label bar)."""
    layout = mosaic.grid(len(CAMERAS), *SIZE)
    ox, oy = layout.origin(index)
    scale = min(layout.tile_w / WIDTH, layout.tile_h / HEIGHT)
    pw, ph = round(WIDTH * scale), round(HEIGHT * scale)
    px, py = ox + (layout.tile_w - pw) // 2, oy + (layout.tile_h - ph) // 2
    top = max(py, oy + 40)
    return shot[top + 4 : py + ph - 4, px + 4 : px + pw - 4]


def dominant(region: np.ndarray) -> str:
    b, g, r = region.reshape(-1, 3).mean(axis=0)
    if r > g + 60 and r > b + 60:
        return "red"
    if g > r + 60 and g > b + 60:
        return "green"
    return "none"


@pytest.mark.display
def test_mosaic_shows_each_camera_live_marks_a_stale_one_and_quits_on_q(
    nodes: Processes, tmp_path: Path, screen: VirtualScreen
) -> None:
    red = write_sliding_square(tmp_path / "red.avi", (30, 30, 200))
    green = write_sliding_square(tmp_path / "green.avi", (30, 180, 30))
    _, red_control = nodes.capture("--source", str(red), "--camera-id", CAMERAS[0], "--loop")
    green_node, green_control = nodes.capture("--source", str(green), "--camera-id", CAMERAS[1], "--loop")
    size = f"{SIZE[0]}x{SIZE[1]}"
    display = nodes.worker("display", "--node", red_control, "--node", green_control, "--size", size, "--title", TITLE)
    display.wait_for(r"window 'framebus-test' open", timeout=30)
    x, y = window_position(screen)

    seen: list[str] = []

    def both_shown() -> list[np.ndarray]:
        shot = grab(screen, x, y)
        seen[:] = [dominant(picture(shot, i)) for i in range(len(CAMERAS))]
        if seen != ["red", "green"]:
            cv2.imwrite(str(tmp_path / "last-shot.png"), shot.astype(np.uint8))
        return [shot] if seen == ["red", "green"] else []

    try:
        first: np.ndarray = wait_until(both_shown, 30, "each tile showing its camera's picture")[0]  # type: ignore[index]
    except AssertionError as e:
        windows = subprocess.run(
            ["xwininfo", "-root", "-tree"], env={"DISPLAY": screen.display, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=20,
        ).stdout  # fmt: skip
        display.send(signal.SIGTERM)
        display.wait_exit(10)
        raise AssertionError(
            f"{e}: tiles last seen as {seen} at window ({x}, {y}) (shot: {tmp_path / 'last-shot.png'});"
            f"\nX windows:\n{windows}\ndisplay said:\n{display.output}"
        ) from None

    def both_changed() -> bool:
        shot = grab(screen, x, y)
        return all(np.abs(picture(shot, i) - picture(first, i)).mean() > 2 for i in range(len(CAMERAS)))

    wait_until(both_changed, 15, "both tiles changing over time (the square slides)")

    # A camera that stops is marked: red frame around its tile, picture dimmed.
    assert green_node.stop() < 1.0
    display.wait_for(r"camera b-green: stale", timeout=15)
    layout = mosaic.grid(len(CAMERAS), *SIZE)
    gx, gy = layout.origin(1)

    def green_marked() -> bool:
        shot = grab(screen, x, y)
        b, g, r = shot[gy + layout.tile_h // 2, gx + 1]
        return r > 200 and g < 60 and b < 60 and dominant(picture(shot, 0)) == "red"

    wait_until(green_marked, 10, "the stale camera's tile framed in red")

    # No check of xdotool's status: the window may close between key press and key release,
    # and the release then fails with BadWindow. The worker's exit is what counts.
    subprocess.run(
        ["xdotool", "search", "--sync", "--onlyvisible", "--name", f"^{TITLE}$", "key", "--window", "%1", "q"],
        env={"DISPLAY": screen.display, "PATH": "/usr/bin:/bin"},
        timeout=20,
        capture_output=True,
    )
    assert display.wait_exit(10) == 0, display.output
    assert "quit key pressed" in display.output
    assert "Traceback" not in display.output


def test_without_a_display_it_fails_at_once_with_a_clear_message(
    nodes: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    unset = nodes.worker("display", "--node", "tcp://127.0.0.1:9")
    assert unset.wait_exit(15) == 2
    assert "cannot show a window: no display: DISPLAY is not set" in unset.output
    assert not Path("/tmp/.X11-unix/X4321").exists()
    monkeypatch.setenv("DISPLAY", ":4321")
    missing = nodes.worker("display", "--node", "tcp://127.0.0.1:9")
    assert missing.wait_exit(15) == 2
    assert "cannot open display ':4321'" in missing.output
    assert "Traceback" not in unset.output + missing.output


def test_headless_opencv_is_reported_with_the_fix() -> None:
    problem = gui_problem("  Video I/O:\n  GUI:                           NONE\n", "5.0.0.93")
    assert problem is not None
    assert "headless build" in problem
    assert 'pip uninstall -y opencv-python-headless && pip install "opencv-python==5.0.0.93"' in problem
    assert gui_problem("nothing about a GUI", "5.0.0.93") is not None


def test_gui_build_passes() -> None:
    assert gui_problem("  GUI:                           QT5\n", "5.0.0.93") is None
    assert gui_problem(cv2.getBuildInformation(), cv2.__version__) is None  # the test venv has the GUI build


def test_missing_display_is_reported() -> None:
    assert "DISPLAY is not set" in (display_problem(None) or "")
    assert "cannot open display ':4999'" in (display_problem(":4999") or "")
