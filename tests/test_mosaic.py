"""Mosaic layout, reduced-size decode and labels (pure image work, no window)."""

from __future__ import annotations

import numpy as np
import pytest

from framebus.common import jpeg
from framebus.worker_node import mosaic


@pytest.mark.parametrize(("count", "cols", "rows"), [(1, 1, 1), (2, 2, 1), (3, 2, 2), (4, 2, 2), (5, 3, 2), (9, 3, 3)])
def test_grid_on_a_wide_canvas(count: int, cols: int, rows: int) -> None:
    layout = mosaic.grid(count, 1280, 720)
    assert (layout.cols, layout.rows) == (cols, rows)
    assert layout.tile_w * cols <= 1280 and layout.tile_h * rows <= 720
    assert layout.origin(count - 1) == (((count - 1) % cols) * layout.tile_w, ((count - 1) // cols) * layout.tile_h)


@pytest.mark.parametrize(
    ("frame", "tile", "factor"),
    [((1280, 720), (640, 360), 2), ((1280, 720), (320, 180), 4), ((1920, 1080), (200, 120), 8),
     ((1280, 720), (1280, 720), 1), ((320, 240), (640, 360), 1), ((1280, 720), (639, 360), 2)],
)  # fmt: skip
def test_reduction_is_the_largest_factor_still_at_least_the_fitted_size(
    frame: tuple[int, int], tile: tuple[int, int], factor: int
) -> None:
    assert mosaic.reduction(*frame, *tile) == factor
    fitted = min(tile[0] / frame[0], tile[1] / frame[1], 1.0) * frame[0]  # never upscaled by decoding
    assert frame[0] / factor >= fitted - 1e-9


def test_tile_is_decoded_small_and_letterboxed() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    image[:, :640] = (0, 0, 255)  # left half red
    image[:, 640:] = (255, 0, 0)  # right half blue
    tile = mosaic.render_tile(jpeg.encode_bgr(image, 90), 320, 240)
    assert tile.shape == (240, 320, 3)
    assert (tile[:30] == mosaic.BACKGROUND).all() and (tile[-30:] == mosaic.BACKGROUND).all()  # letterbox bands
    assert tile[120, 80, 2] > 200 and tile[120, 240, 0] > 200


def test_a_camera_that_is_not_streaming_is_marked_red_and_dimmed() -> None:
    bright = np.full((180, 320, 3), 200, np.uint8)
    live, stale = bright.copy(), bright.copy()
    mosaic.label(live, mosaic.TileInfo("cam1", "streaming", 30.0, 0.02))
    mosaic.label(stale, mosaic.TileInfo("cam1", "stale", 0.0, 4.2, "nothing received for 3.1 s"))
    assert tuple(live[90, 1]) == (200, 200, 200)
    assert tuple(stale[90, 1]) == mosaic.ALERT
    assert stale[150, 40].mean() < 120  # dimmed
    assert (live[:20] != 200).any()  # the label bar


def test_compose_places_tiles() -> None:
    layout = mosaic.grid(2, 640, 360)
    tiles = [np.full((layout.tile_h, layout.tile_w, 3), v, np.uint8) for v in (50, 150)]
    canvas = mosaic.compose(layout, tiles, 640, 360)
    assert canvas.shape == (360, 640, 3)
    assert canvas[100, 100, 0] == 50 and canvas[100, 500, 0] == 150
