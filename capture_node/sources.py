"""Frame sources: the built-in test picture and anything cv2.VideoCapture opens."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from capture_node.config import CameraConfig
from capture_node.pattern import TestPattern
from common.redact import redact_url

OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 5000
DEFAULT_FPS = 30.0


class SourceError(RuntimeError):
    """A source cannot be opened or read; the message names the (redacted) source."""


@dataclass(frozen=True)
class SourceInfo:
    width: int
    height: int
    fps: float  # the source's own rate; 0 when unknown
    paced: bool  # True: the grab loop must pace reads at fps (files, test picture)
    is_file: bool


class Source(Protocol):
    info: SourceInfo

    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end of a file or when the stream failed."""

    def rewind(self) -> bool:
        """Go back to the first frame (files); False when not possible."""

    def close(self) -> None: ...


class TestPatternSource:
    def __init__(self, config: CameraConfig) -> None:
        self._pattern = TestPattern(config.id, config.width, config.height)
        self._frame_number = 0
        self.info = SourceInfo(config.width, config.height, config.fps or DEFAULT_FPS, paced=True, is_file=False)

    def read(self) -> np.ndarray | None:
        image = self._pattern.render(self._frame_number)
        self._frame_number += 1
        return image

    def rewind(self) -> bool:
        return False

    def close(self) -> None:
        pass


class OpenCVSource:
    """A file, URL or device. Timeouts are constructor parameters: set later, they do nothing."""

    def __init__(self, config: CameraConfig) -> None:
        self._config = config
        target: str | int = int(config.source) if config.source.isdigit() else config.source
        is_file = isinstance(target, str) and "://" not in target
        if is_file and not Path(str(target)).is_file():
            raise SourceError(f"video file {config.source!r} does not exist")
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
        if isinstance(target, str) and target.startswith("rtsp"):
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        backend = cv2.CAP_ANY if isinstance(target, int) else cv2.CAP_FFMPEG
        self._cap = cv2.VideoCapture(target, backend, params)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"cannot open {redact_url(config.source)!r}")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 0 < fps <= 1000:
            fps = 0.0
        width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        paced = is_file and not config.as_fast_as_possible
        self.info = SourceInfo(width, height, fps or (DEFAULT_FPS if is_file else 0.0), paced=paced, is_file=is_file)

    def read(self) -> np.ndarray | None:
        ok, image = self._cap.read()
        return image if ok else None

    def rewind(self) -> bool:
        return bool(self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0))

    def close(self) -> None:
        self._cap.release()


def open_source(config: CameraConfig) -> Source:
    if config.source == "test":
        return TestPatternSource(config)
    return OpenCVSource(config)
