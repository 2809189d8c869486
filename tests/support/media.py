"""Test media written on the spot with OpenCV (nothing binary is committed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 320, 240, 30.0
BITS = 10
_STRIPE = WIDTH // BITS


def numbered_frame(index: int) -> np.ndarray:
    """A frame whose index is drawn as 10 black/white stripes (survives JPEG twice)."""
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    for bit in range(BITS):
        if index >> bit & 1:
            image[:, bit * _STRIPE : (bit + 1) * _STRIPE] = 255
    return image


def frame_number(image: np.ndarray) -> int:
    """Read back the index drawn by numbered_frame."""
    row = image[HEIGHT // 2]
    return sum(1 << bit for bit in range(BITS) if row[bit * _STRIPE + _STRIPE // 2].mean() > 128)


def write_numbered_video(path: Path, frames: int) -> Path:
    """An MJPG .avi whose frame i shows the number i."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened(), "OpenCV cannot write MJPG video here"
    for i in range(frames):
        writer.write(numbered_frame(i))
    writer.release()
    return path


CLOCK_BITS = 44  # as drawn by tests/support/rtsp_server.py --source clock


def clock_ms(image: np.ndarray) -> int:
    """The wall-clock time (ms since the epoch) an RTSP test server drew into a frame."""
    stripe = image.shape[1] // CLOCK_BITS
    row = image[image.shape[0] // 2].mean(axis=-1) if image.ndim == 3 else image[image.shape[0] // 2]
    return sum(1 << bit for bit in range(CLOCK_BITS) if row[bit * stripe + stripe // 2] > 128)
