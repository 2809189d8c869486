"""Frame sources: the built-in test picture and anything cv2.VideoCapture opens."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from capture_node.config import CameraConfig
from capture_node.diagnose import why_not_open
from capture_node.pattern import TestPattern
from common.redact import redact

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
        if is_file and not Path(str(target)).exists():
            raise SourceError(f"video file {config.source!r} does not exist")
        if isinstance(target, int) and not os.path.exists(f"/dev/video{target}"):  # OpenCV would only add noise
            raise SourceError(f"cannot open {target}: {explain_failure(config)}")
        options = ffmpeg_options(config)
        # Read at open, per process: each camera runs in its own process, so no other camera
        # sees this camera's transport or timeouts.
        if options:
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = options
        else:
            os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(config.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(config.read_timeout * 1000),
        ]
        if not isinstance(target, int):
            params += [cv2.CAP_PROP_N_THREADS, 1]  # a 2-thread decoder holds back one frame (+33 ms)
        backend = cv2.CAP_ANY if isinstance(target, int) else cv2.CAP_FFMPEG
        self._cap = cv2.VideoCapture(target, backend, params)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"cannot open {redact(config.source)}: {explain_failure(config)}")
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


def ffmpeg_options(config: CameraConfig) -> str:
    """FFmpeg options for RTSP: explicit transport (the variable replaces OpenCV's default
    prefer_tcp), a socket timeout in microseconds (FFmpeg >= 5 calls it `timeout`; `stimeout`
    is silently ignored) and minimal probing (opening takes ~0.1 s instead of ~1 s)."""
    if not config.source.lower().startswith("rtsp"):
        return ""
    return f"rtsp_transport;{config.transport}|timeout;{int(config.read_timeout * 1_000_000)}|probesize;32"


def explain_failure(config: CameraConfig) -> str:
    if config.source.isdigit():
        device = f"/dev/video{config.source}"
        if not os.path.exists(device):
            return f"no video device {config.source} ({device} does not exist; `ls /dev/video*` lists them)"
        return f"no usable video device {config.source} ({device})"
    if "://" not in config.source:
        if os.path.isdir(config.source):
            return "it is a directory, not a video file"
        return "not a video file OpenCV/FFmpeg can read"
    return why_not_open(config.source, config.open_timeout)


def open_source(config: CameraConfig) -> Source:
    if config.source == "test":
        return TestPatternSource(config)
    return OpenCVSource(config)
