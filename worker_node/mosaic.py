"""The mosaic a display shows: grid layout, reduced-size decode per tile, labels. No window here
(pure image work, testable anywhere)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from framebus.common import jpeg
from framebus.common.words import State

BACKGROUND = (24, 24, 24)
LABEL_BAR = (0, 0, 0)
TEXT = (255, 255, 255)
ALERT = (0, 0, 255)  # BGR red: stale / reconnecting / source down
FACTORS = (8, 4, 2, 1)


@dataclass(frozen=True)
class Layout:
    cols: int
    rows: int
    tile_w: int
    tile_h: int

    def origin(self, index: int) -> tuple[int, int]:
        """Top-left pixel (x, y) of tile `index` (row-major)."""
        row, col = divmod(index, self.cols)
        return col * self.tile_w, row * self.tile_h


@dataclass(frozen=True)
class TileInfo:
    camera: str
    state: str  # streaming, stale, reconnecting, ...
    fps: float
    age_s: float  # now minus capture time of the shown frame
    reason: str = ""


def grid(count: int, width: int, height: int) -> Layout:
    """Columns and rows for `count` tiles on a width x height canvas, tiles as large as possible
    for 16:9 pictures (on a tie, more columns: side by side suits a wide screen)."""
    count = max(1, count)
    best: Layout | None = None
    best_area = -1.0
    for cols in range(1, count + 1):
        rows = math.ceil(count / cols)
        tile_w, tile_h = width // cols, height // rows
        shown = min(tile_w, tile_h * 16 // 9)  # width of a 16:9 picture fitted into the tile
        if shown * shown >= best_area:
            best, best_area = Layout(cols, rows, tile_w, tile_h), shown * shown
    assert best is not None
    return best


def reduction(frame_w: int, frame_h: int, tile_w: int, tile_h: int) -> int:
    """The largest DCT scaling factor (1, 2, 4, 8) whose decode is still at least the fitted size."""
    scale = min(tile_w / frame_w, tile_h / frame_h)
    for factor in FACTORS:
        if factor * scale <= 1.0:
            return factor
    return 1


def render_tile(
    data: bytes | memoryview, tile_w: int, tile_h: int, decode: Callable[[int], np.ndarray] | None = None
) -> np.ndarray:
    """Decode at reduced size (DCT scaling) and fit into a tile, letterboxed. The size is the
    JPEG's own (its frame header), not what the message claims. `decode(factor)` decodes `data`
    (with the caller's pixel limit); by default common.jpeg.decode_reduced. JpegError if it does not."""
    frame_w, frame_h = jpeg.frame_size(data)
    factor = reduction(frame_w, frame_h, tile_w, tile_h)
    image = decode(factor) if decode is not None else jpeg.decode_reduced(data, factor)
    return fit(image, tile_w, tile_h)


def fit(image: np.ndarray, tile_w: int, tile_h: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = min(tile_w / w, tile_h / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != (w, h):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    x, y = (tile_w - size[0]) // 2, (tile_h - size[1]) // 2
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.copyMakeBorder(
        image, y, tile_h - size[1] - y, x, tile_w - size[0] - x, cv2.BORDER_CONSTANT, value=BACKGROUND
    )


def blank(tile_w: int, tile_h: int) -> np.ndarray:
    return _background(tile_w, tile_h).copy()


@lru_cache(maxsize=8)
def _background(width: int, height: int) -> np.ndarray:
    """Filled once per size: np.full with a colour costs ~6 ms at 1280x720, a copy 0.1 ms."""
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    canvas.flags.writeable = False
    return canvas


def label(tile: np.ndarray, info: TileInfo) -> None:
    """A bar with camera id, fps and frame age; a camera that is not streaming gets a red
    frame, its picture dimmed and its state written large across it."""
    h, w = tile.shape[:2]
    scale = max(0.35, min(0.6, w / 900))
    thick = 1
    bar_h = int(26 * scale / 0.5)
    alert = info.state != State.STREAMING
    if alert:
        tile[:] = (tile * 0.45).astype(np.uint8)
    cv2.rectangle(tile, (0, 0), (w - 1, bar_h), LABEL_BAR, -1)
    age = f"{info.age_s * 1000:.0f} ms" if info.age_s < 10 else f"{info.age_s:.0f} s"
    text = f"{info.camera}  {info.fps:4.1f} fps  age {age}"
    cv2.putText(tile, text, (6, int(bar_h * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT, thick, cv2.LINE_AA)
    if alert:
        cv2.rectangle(tile, (0, 0), (w - 1, h - 1), ALERT, max(3, w // 100))
        big = max(0.6, min(1.6, w / 400))
        (tw, th), _ = cv2.getTextSize(info.state.upper(), cv2.FONT_HERSHEY_SIMPLEX, big, 2)
        org = ((w - tw) // 2, (h + th) // 2)
        cv2.putText(tile, info.state.upper(), org, cv2.FONT_HERSHEY_SIMPLEX, big, ALERT, 2, cv2.LINE_AA)
        if info.reason:
            small = scale * 0.9
            (rw, _), _ = cv2.getTextSize(info.reason[:80], cv2.FONT_HERSHEY_SIMPLEX, small, 1)
            cv2.putText(
                tile, info.reason[:80], (max(4, (w - rw) // 2), org[1] + int(30 * big)),
                cv2.FONT_HERSHEY_SIMPLEX, small, TEXT, 1, cv2.LINE_AA,
            )  # fmt: skip


def compose(layout: Layout, tiles: list[np.ndarray], width: int, height: int) -> np.ndarray:
    canvas = blank(width, height)
    for index, tile in enumerate(tiles):
        x, y = layout.origin(index)
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return canvas


def waiting_screen(width: int, height: int, text: str) -> np.ndarray:
    canvas = blank(width, height)
    cv2.putText(canvas, text[:100], (20, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, TEXT, 1, cv2.LINE_AA)
    return canvas
