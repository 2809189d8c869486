"""Motion detection by frame differencing: what changed since the previous frame, boxed.

    worker-node process --node tcp://edge1:5555 --camera cam1 --handler framebus.worker_node.handlers.motion:MotionDetector

Frames are compared at a reduced width (noise and cost both drop), blurred, differenced and
thresholded; the changed regions' bounding boxes are drawn on the full-size frame in
BOX_COLOUR and returned as results. One instance per camera (it keeps the previous frame).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from framebus import FrameHeader

BOX_COLOUR = (0, 255, 0)  # BGR green


class MotionDetector:
    def __init__(self, threshold: int = 25, min_area_fraction: float = 0.001, work_width: int = 320) -> None:
        self.threshold = threshold
        self.min_area_fraction = min_area_fraction
        self.work_width = work_width
        self._previous: np.ndarray | None = None

    def __call__(self, image: np.ndarray, header: FrameHeader) -> tuple[np.ndarray, dict[str, Any]]:
        height, width = image.shape[:2]
        scale = min(1.0, self.work_width / width)
        small = cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
        grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small, (5, 5), 0)
        previous, self._previous = self._previous, grey
        if previous is None or previous.shape != grey.shape:
            return image, {"motion": False, "boxes": [], "changed": 0.0}
        _, mask = cv2.threshold(cv2.absdiff(previous, grey), self.threshold, 255, cv2.THRESH_BINARY)
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = self.min_area_fraction * grey.size
        boxes = []
        for contour in contours:
            if cv2.contourArea(contour) < min_area:
                continue
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([round(x / scale), round(y / scale), round(w / scale), round(h / scale)])
        thickness = max(2, width // 320)
        for x, y, w, h in boxes:
            cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), BOX_COLOUR, thickness)
        changed = float(np.count_nonzero(mask)) / mask.size
        return image, {"motion": bool(boxes), "boxes": boxes, "changed": round(changed, 4)}
