"""Face detection with OpenCV's frontal-face Haar cascade (haarcascade_frontalface_default.xml).

    worker-node process --node tcp://edge1:5555 --camera cam1 --handler framebus.worker_node.handlers.faces:FaceDetector

OpenCV 5.0's pip wheels ship no cascade files and no cv2.CascadeClassifier, so the cascade
file comes with this package (data/, under OpenCV's Intel licence, kept in the file) and is
evaluated by cv2.CascadeClassifier where the installed OpenCV has it (4.x, contrib builds),
else by worker_node.handlers.haar (NumPy; slower: ~0.3-0.4 s of CPU per 640x360 frame, which
only lowers the output rate). Faces are boxed in BOX_COLOUR and returned as results.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from framebus import FrameHeader
from framebus.worker_node.handlers.haar import HaarCascade

BOX_COLOUR = (0, 165, 255)  # BGR orange
CASCADE = Path(__file__).resolve().parent / "data" / "haarcascade_frontalface_default.xml"
Detect = Callable[[np.ndarray], list[tuple[int, int, int, int]]]


@lru_cache(maxsize=4)
def load_cascade(path: Path = CASCADE, min_neighbors: int = 4) -> Detect:
    """Parsed once per process: every camera's detector shares it."""
    if not path.is_file():
        raise FileNotFoundError(f"cascade file {path} is missing (reinstall framebus)")
    classifier_cls = getattr(cv2, "CascadeClassifier", None)
    if classifier_cls is not None:
        classifier = classifier_cls(str(path))
        if classifier.empty():
            raise ValueError(f"OpenCV cannot load the cascade {path}")
        return lambda grey: [
            tuple(int(v) for v in r)  # type: ignore[misc]
            for r in classifier.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=min_neighbors, minSize=(24, 24))
        ]
    cascade = HaarCascade(path)
    return lambda grey: cascade.detect(grey, scale_factor=1.1, min_neighbors=min_neighbors)


class FaceDetector:
    def __init__(self, max_width: int = 640, cascade: Path = CASCADE, min_neighbors: int = 4) -> None:
        self.max_width = max_width
        self._detect = load_cascade(cascade, min_neighbors)

    def detect(self, image: np.ndarray) -> list[list[int]]:
        """Face boxes [x, y, w, h] in the image's pixels."""
        height, width = image.shape[:2]
        scale = min(1.0, self.max_width / width)
        small = (
            image
            if scale == 1.0
            else cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        )
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small)
        return [[round(v / scale) for v in box] for box in self._detect(grey)]

    def __call__(self, image: np.ndarray, header: FrameHeader) -> tuple[np.ndarray, dict[str, Any]]:
        boxes = self.detect(image)
        thickness = max(2, image.shape[1] // 320)
        for x, y, w, h in boxes:
            cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), BOX_COLOUR, thickness)
        return image, {"faces": len(boxes), "boxes": boxes}
