"""Videos with a known picture, written on the spot (nothing binary is committed): a plain
background in one colour with a white square sliding across the middle."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 320, 240, 30.0
SQUARE = 60
# A real face: OpenCV's own sample photo (Debian opencv-doc, installed by deploy/install-test-deps.sh).
MESSI = Path("/usr/share/doc/opencv-doc/examples/data/messi5.jpg")
MESSI_FACE = (226, 94, 37, 37)  # where OpenCV's frontal-face cascade finds the face: x, y, w, h


def sliding_square(index: int, background: tuple[int, int, int], frames: int) -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), background, dtype=np.uint8)
    x = int(index * (WIDTH - SQUARE) / max(1, frames - 1))
    y = (HEIGHT - SQUARE) // 2
    image[y : y + SQUARE, x : x + SQUARE] = 255
    return image


def write_sliding_square(path: Path, background: tuple[int, int, int], frames: int = 45) -> Path:
    """An MJPG .avi of `frames` frames (loop it for a steady camera)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened(), "OpenCV cannot write MJPG video here"
    for i in range(frames):
        writer.write(sliding_square(i, background, frames))
    writer.release()
    return path
