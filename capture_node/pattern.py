"""The built-in test picture: natural-looking (JPEG cost like a real camera, not 97% black),
moving, and stamped with camera id, frame number and wall-clock time so a viewer can check
freshness by eye."""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

OVERLAY_FONT = cv2.FONT_HERSHEY_SIMPLEX


class TestPattern:
    def __init__(self, camera_id: str, width: int, height: int) -> None:
        self.camera_id = camera_id
        self.width = width
        self.height = height
        rng = np.random.default_rng(zlib.crc32(camera_id.encode()))
        # Smooth colour fields plus fine grain: compresses like a real scene at quality 80.
        coarse = rng.integers(30, 225, size=(max(2, height // 48), max(4, 2 * width // 48), 3), dtype=np.uint8)
        scene = cv2.resize(coarse, (2 * width, height), interpolation=cv2.INTER_CUBIC)
        for _ in range(24):
            x, y = int(rng.integers(0, 2 * width)), int(rng.integers(0, height))
            size = int(rng.integers(height // 20, height // 5))
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.rectangle(scene, (x, y), (x + size, y + size // 2), colour, -1)
        grain = rng.normal(0, 6, size=scene.shape)
        self._scene = np.clip(scene + grain, 0, 255).astype(np.uint8)
        self._scale = max(0.4, height / 720)

    def render(self, frame_number: int, now: float | None = None) -> np.ndarray:
        offset = (frame_number * 4) % self.width
        image = np.ascontiguousarray(self._scene[:, offset : offset + self.width])
        cx = int((np.sin(frame_number / 15) * 0.4 + 0.5) * self.width)
        cy = int((np.cos(frame_number / 20) * 0.3 + 0.5) * self.height)
        cv2.circle(image, (cx, cy), int(40 * self._scale), (255, 255, 255), -1)
        draw_overlay(
            image, overlay_lines(self.camera_id, frame_number, time.time() if now is None else now), self._scale
        )
        return image


def overlay_lines(camera_id: str, frame_number: int, now: float) -> list[str]:
    clock = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    return [camera_id, f"frame {frame_number}", clock]


@dataclass(frozen=True)
class OverlayLayout:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), inside the image
    origins: tuple[tuple[int, int], ...]  # bottom-left of each line's text
    font_scale: float
    thickness: int


def overlay_layout(lines: list[str], scale: float, shape: tuple[int, ...]) -> OverlayLayout:
    """Where the text goes: one line under the other in a box sized to the widest line."""
    font_scale = 1.2 * scale
    thickness = max(1, round(2 * scale))
    margin = max(2, round(10 * scale))
    (_, ascent), descent = cv2.getTextSize("0Ag", OVERLAY_FONT, font_scale, thickness)
    step = max(round(45 * scale), ascent + descent + margin)
    width = max(cv2.getTextSize(text, OVERLAY_FONT, font_scale, thickness)[0][0] for text in lines)
    x0 = y0 = margin
    x1 = min(shape[1], x0 + width + 2 * margin)
    y1 = min(shape[0], y0 + margin + ascent + step * (len(lines) - 1) + descent + margin)
    origins = tuple((x0 + margin, y0 + margin + ascent + step * row) for row in range(len(lines)))
    return OverlayLayout((x0, y0, x1, y1), origins, font_scale, thickness)


def draw_overlay(image: np.ndarray, lines: list[str], scale: float) -> OverlayLayout:
    """White text, each line drawn once, on a box cleared to black. Not an outline drawn under
    the text: OpenCV 5 draws with fonts whose advance grows with thickness, so a thick outline
    pass lands its digits beside and over the thin pass's (the garbled overlay)."""
    layout = overlay_layout(lines, scale, image.shape)
    x0, y0, x1, y1 = layout.box
    image[y0:y1, x0:x1] = 0
    for text, origin in zip(lines, layout.origins, strict=True):
        cv2.putText(
            image, text, origin, OVERLAY_FONT, layout.font_scale, (255, 255, 255), layout.thickness, cv2.LINE_AA
        )
    return layout
