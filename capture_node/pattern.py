"""The built-in test picture: natural-looking (JPEG cost like a real camera, not 97% black),
moving, and stamped with camera id, frame number and wall-clock time so a viewer can check
freshness by eye."""

from __future__ import annotations

import time
import zlib

import cv2
import numpy as np


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

    def render(self, frame_number: int) -> np.ndarray:
        offset = (frame_number * 4) % self.width
        image = np.ascontiguousarray(self._scene[:, offset : offset + self.width])
        cx = int((np.sin(frame_number / 15) * 0.4 + 0.5) * self.width)
        cy = int((np.cos(frame_number / 20) * 0.3 + 0.5) * self.height)
        cv2.circle(image, (cx, cy), int(40 * self._scale), (255, 255, 255), -1)
        clock = time.strftime("%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        for row, text in enumerate((self.camera_id, f"frame {frame_number}", clock)):
            origin = (int(20 * self._scale), int((50 + 45 * row) * self._scale))
            cv2.putText(
                image,
                text,
                origin,
                cv2.FONT_HERSHEY_SIMPLEX,
                1.2 * self._scale,
                (0, 0, 0),
                int(6 * self._scale) + 1,
                cv2.LINE_AA,
            )
            cv2.putText(
                image,
                text,
                origin,
                cv2.FONT_HERSHEY_SIMPLEX,
                1.2 * self._scale,
                (255, 255, 255),
                int(2 * self._scale) + 1,
                cv2.LINE_AA,
            )
        return image
