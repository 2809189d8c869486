"""The test picture's overlay is legible: each line of text drawn once, white on a box cleared
to black, lines apart. Checked on rendered frames (exactly, against text drawn alone) and on a
frame as a worker receives it from a real capture node (JPEG and all)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import zmq

from framebus.capture_node import pattern as test_picture
from framebus.capture_node.pattern import OVERLAY_FONT, overlay_layout, overlay_lines
from framebus.common import jpeg
from framebus.common.protocol import Frame, decode
from framebus.common.sockets import StreamOptions, connect_frame_subscriber
from framebus.worker_node.discovery import describe
from tests.support.processes import Processes

NOW = time.mktime((2024, 5, 17, 13, 28, 31, 0, 0, -1)) + 0.035


def text_alone(lines: list[str], scale: float, shape: tuple[int, ...]) -> np.ndarray:
    """The box as it should look: black, each line put once at its place, nothing else."""
    layout = overlay_layout(lines, scale, shape)
    x0, y0, x1, y1 = layout.box
    canvas = np.zeros(shape, np.uint8)
    for text, origin in zip(lines, layout.origins, strict=True):
        cv2.putText(
            canvas, text, origin, OVERLAY_FONT, layout.font_scale, (255, 255, 255), layout.thickness, cv2.LINE_AA
        )
    return canvas[y0:y1, x0:x1]


def text_bands(box: np.ndarray, threshold: int = 128) -> list[tuple[int, int]]:
    """Runs of rows holding bright (text) pixels: one per legible line."""
    rows = (box.max(axis=(1, 2)) if box.ndim == 3 else box.max(axis=1)) >= threshold
    bands, start = [], None
    for i, lit in enumerate([*rows, False]):
        if lit and start is None:
            start = i
        elif not lit and start is not None:
            bands.append((start, i))
            start = None
    return bands


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (640, 360), (320, 240)])
@pytest.mark.parametrize("frame_number", [0, 7, 123456])
def test_overlay_is_the_text_alone_on_a_cleared_box(width: int, height: int, frame_number: int) -> None:
    pattern = test_picture.TestPattern("cam1", width, height)
    lines = overlay_lines("cam1", frame_number, NOW)
    assert lines == ["cam1", f"frame {frame_number}", "13:28:31.035"]
    image = pattern.render(frame_number, now=NOW)
    x0, y0, x1, y1 = overlay_layout(lines, pattern._scale, image.shape).box
    expected = text_alone(lines, pattern._scale, image.shape)
    assert np.array_equal(image[y0:y1, x0:x1], expected), "scene, circle or a second text pass in the box"
    assert len(text_bands(expected)) == 3, "three lines, apart from each other"
    ring = max(1, round(5 * pattern._scale))
    for edge in (expected[:ring], expected[-ring:], expected[:, :ring], expected[:, -ring:]):
        assert edge.max() == 0, "text reaches the edge of its box (clipped)"


def test_overlay_is_legible_in_a_frame_a_worker_receives(nodes: Processes) -> None:
    _, control = nodes.capture("--camera-id", "legible", "--width", "640", "--height", "360", "--fps", "10")
    with zmq.Context() as ctx:
        (camera,) = describe(ctx, control, 10.0).cameras
        sock = connect_frame_subscriber(ctx, camera.endpoint, StreamOptions())
        try:
            deadline = time.monotonic() + 15
            frame = None
            while frame is None and time.monotonic() < deadline:
                if sock.poll(500):
                    message = decode(sock.recv())
                    frame = message if isinstance(message, Frame) else None
        finally:
            sock.close(0)
    assert frame is not None, "no frame within 15 s"
    image = jpeg.decode_bgr(frame.jpeg)
    scale = max(0.4, 360 / 720)
    capture_time = frame.header.capture_ns / 1e9
    lines = overlay_lines("legible", frame.header.seq, capture_time)
    x0, y0, x1, y1 = overlay_layout(lines, scale, image.shape).box
    expected = text_alone(lines, scale, image.shape)
    grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    assert len(text_bands(grey)) == 3, "three separate lines of text in the received frame"
    # The name line does not change from frame to frame: after JPEG it still matches the text alone.
    first_line_rows = slice(0, text_bands(expected)[0][1] + 2)
    name_width = cv2.getTextSize("legible", OVERLAY_FONT, 1.2 * scale, max(1, round(2 * scale)))[0][0]
    columns = slice(0, name_width + 2 * max(2, round(10 * scale)))
    reference = cv2.cvtColor(expected, cv2.COLOR_BGR2GRAY)[first_line_rows, columns].astype(int)
    difference = np.abs(grey[first_line_rows, columns].astype(int) - reference).mean()
    assert difference < 8, f"the camera name differs from the text alone by {difference:.1f} levels on average"
