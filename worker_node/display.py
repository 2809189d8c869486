"""`worker-node display`: one window with the newest frame of each camera, as a mosaic.

cv2.imshow from a GUI build of OpenCV with no usable display aborts the whole process
(SIGABRT inside Qt, no exception to catch), so the display and the GUI support are checked
first and a missing one is reported with what to do about it. Tiles are decoded at reduced
size (DCT scaling) only when they are drawn, and drawing is capped at `max_fps`, so cameras
that send faster than the screen shows cost receive time only.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import logging
import os
import re
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from framebus.common import jpeg
from framebus.common.cli_args import arg_type
from framebus.common.protocol import Frame
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.redact import redact
from framebus.common.shutdown import ShutdownSignals
from framebus.worker_node import flags, mosaic
from framebus.worker_node.access import Access
from framebus.worker_node.pixel_limit import PixelLimit
from framebus.worker_node.sink import Driver, ReceiveOptions, ReceiverView
from framebus.worker_node.subscription import Subscription

log = logging.getLogger("worker_node.display")

QUIT_KEYS = {ord("q"), ord("Q"), 27}  # q, Esc
GUI_PUMP_S = 0.03  # HighGUI has no file descriptor to wait on: its events are pumped this often
LABELS_EVERY_S = 1.0  # labels redrawn (fps, the growing age of a stale camera) at least this often


class DisplayUnavailableError(RuntimeError):
    """No window can be shown here; the message says why and what to do."""


@dataclass(frozen=True)
class DisplayOptions:
    nodes: tuple[str, ...]
    cameras: tuple[str, ...] = ()
    width: int = 1280  # mosaic (window) size
    height: int = 720
    title: str = "framebus"
    max_fps: float = 30.0  # redraws per second at most
    access: Access = field(default_factory=Access)
    max_pixels: int | None = None  # pictures decoded at most; None: each camera's described size


def display_problem(display: str | None) -> str | None:
    """Why no X display can be opened (None: it can). Asks Xlib itself, as Qt would."""
    if not display:
        return (
            "no display: DISPLAY is not set. Run it in a desktop session, over `ssh -X`, or on a "
            "virtual screen: `Xvfb :99 & DISPLAY=:99 worker-node display ...`"
        )
    library = ctypes.util.find_library("X11")
    if library is None:
        return "libX11 is not installed (Debian/Ubuntu: apt install libx11-6)"
    xlib = ctypes.CDLL(library)
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    handle = xlib.XOpenDisplay(display.encode())
    if not handle:
        return (
            f"cannot open display {display!r}: is the X server running, and may this user use it (XAUTHORITY, xhost)?"
        )
    xlib.XCloseDisplay(handle)
    return None


def gui_problem(build_information: str, version: str) -> str | None:
    """Why this OpenCV cannot open windows (None: it can)."""
    m = re.search(r"^\s*GUI:\s*(\S+)", build_information, re.MULTILINE)
    if m is None or m[1].upper() == "NONE":
        return (
            "the installed OpenCV has no GUI support (it is the headless build, which edge boxes use). "
            f'To show windows: pip uninstall -y opencv-python-headless && pip install "opencv-python=={version}" '
            "(needs libGL: apt install libgl1)"
        )
    return None


def check_display() -> None:
    problem = display_problem(os.environ.get("DISPLAY")) or gui_problem(cv2.getBuildInformation(), cv2.__version__)
    if problem:
        raise DisplayUnavailableError(problem)


class MosaicDisplay:
    """The window and what is drawn in it: a sink (worker_node.sink) on the driver's thread
    (HighGUI is not thread-safe). It ticks to pump HighGUI's events (it has no file descriptor
    to wait on) and, when something changed, to draw, at most max_fps times a second."""

    def __init__(self, options: DisplayOptions) -> None:
        self.options = options
        self._latest: dict[str, Frame] = {}
        self._tiles: dict[str, tuple[Frame, tuple[int, int], np.ndarray]] = {}
        self._pixels = PixelLimit(options.max_pixels)
        self._bad = RateLimitedLog(log)
        self.renders = 0
        self.done = False
        self._dirty = False
        self._started = time.monotonic()
        self._next_labels = self._started + LABELS_EVERY_S

    @property
    def cadence(self) -> float:
        return min(GUI_PUMP_S, 1.0 / self.options.max_fps) if self._dirty else GUI_PUMP_S

    def start(self, receiver: ReceiverView) -> None:
        o = self.options
        cv2.namedWindow(o.title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # no Qt toolbar
        cv2.imshow(o.title, mosaic.waiting_screen(o.width, o.height, f"waiting for cameras of {', '.join(o.nodes)}"))
        log.info("window %r open (%dx%d); q or Esc quits", o.title, o.width, o.height)
        self._started = time.monotonic()
        self._next_labels = self._started + LABELS_EVERY_S

    def on_frame(self, sub: Subscription, frame: Frame) -> None:
        self._latest[sub.name] = frame
        self._dirty = True

    def on_tick(self, receiver: ReceiverView) -> None:
        o = self.options
        if time.monotonic() >= self._next_labels:
            self._next_labels += LABELS_EVERY_S
            self._dirty = True  # labels: fps, growing age of a stale camera
        if self._dirty and receiver.subscriptions:
            cv2.imshow(o.title, self.render(receiver))
            self.renders += 1
            self._dirty = False
        key = cv2.waitKey(1)
        if key != -1 and key & 0xFF in QUIT_KEYS:
            log.info("quit key pressed")
            self.done = True
        elif cv2.getWindowProperty(o.title, cv2.WND_PROP_VISIBLE) < 1:
            log.info("window closed")
            self.done = True

    def close(self) -> None:
        cv2.destroyAllWindows()
        cv2.waitKey(1)  # let HighGUI process the destroy before the process exits
        elapsed = max(1e-9, time.monotonic() - self._started)
        log.info("drew %d mosaics in %.1f s (%.1f per second)", self.renders, elapsed, self.renders / elapsed)

    def render(self, receiver: ReceiverView) -> np.ndarray:
        o = self.options
        names = sorted(receiver.subscriptions)
        layout = mosaic.grid(len(names), o.width, o.height)
        size = (layout.tile_w, layout.tile_h)
        now_ns = time.time_ns()
        tiles = []
        for name in names:
            sub = receiver.subscriptions[name]
            frame = self._latest.get(name)
            if frame is None:
                tile = mosaic.blank(*size)
                age = 0.0
            else:
                cached = self._tiles.get(name)
                if cached is None or cached[0] is not frame or cached[1] != size:
                    cached = (frame, size, self._tile(receiver, sub, frame, size))
                    self._tiles[name] = cached
                tile = cached[2].copy()
                age = max(0.0, (now_ns - frame.header.capture_ns) / 1e9)
            mosaic.label(tile, mosaic.TileInfo(name, sub.status.state, sub.stats.fps, age, redact(sub.status.reason)))
            tiles.append(tile)
        return mosaic.compose(layout, tiles, o.width, o.height)

    def _tile(self, receiver: ReceiverView, sub: Subscription, frame: Frame, size: tuple[int, int]) -> np.ndarray:
        """The frame as a tile; a blank one for a picture that is refused or does not decode."""
        info = receiver.camera_info.get(sub.name)

        def decode(factor: int) -> np.ndarray:
            return self._pixels.decode_reduced(sub.name, frame.jpeg, factor, info, sub.stats)

        try:
            return mosaic.render_tile(frame.jpeg, *size, decode=decode)
        except jpeg.JpegTooLargeError:
            return mosaic.blank(*size)  # counted and logged
        except jpeg.JpegError as exc:
            sub.stats.malformed += 1
            self._bad.warning(f"jpeg-{sub.name}", "camera %s: %s; frame not shown", sub.name, exc)
            return mosaic.blank(*size)


# ---------------------------------------------------------------------------- `worker-node display`


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if (
        not sep
        or not width.isdigit()
        or not height.isdigit()
        or not (64 <= int(width) <= 8192 and 64 <= int(height) <= 8192)
    ):
        raise ValueError(f"{text!r} is not a size like 1280x720 (64 to 8192 pixels each way)")
    return int(width), int(height)


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    display = sub.add_parser(
        "display",
        help="show cameras in a window (mosaic)",
        description="One window with the newest frame of each camera; q or Esc quits. Needs a display "
        "and the GUI build of OpenCV (opencv-python).",
    )
    flags.add_nodes(display)
    display.add_argument(
        "--size", type=arg_type(_size), default=(1280, 720), metavar="WxH", help="window size (default 1280x720)"
    )
    display.add_argument("--title", default="framebus", help="window title (default framebus)")
    display.add_argument(
        "--max-fps", type=arg_type(flags.positive_float), default=30.0, metavar="N", help="redraws per second at most"
    )
    flags.add_max_pixels(display)
    display.set_defaults(func=main)
    return display


def main(args: argparse.Namespace) -> int:
    access = flags.access(args)
    width, height = args.size
    options = DisplayOptions(
        tuple(args.node), tuple(args.camera), width, height, args.title, args.max_fps, access, args.max_pixels
    )
    try:
        check_display()
    except DisplayUnavailableError as exc:
        log.error("cannot show a window: %s", exc)
        return 2
    driver = Driver([MosaicDisplay(options)], ReceiveOptions(options.nodes, options.cameras, access=access))
    flags.serve_metrics_of(args, driver)
    driver.run(ShutdownSignals())
    return 0
