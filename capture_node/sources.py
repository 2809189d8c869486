"""Frame sources: the built-in test picture and anything cv2.VideoCapture opens."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from framebus.capture_node.config import CameraConfig
from framebus.capture_node.diagnose import why_not_open
from framebus.capture_node.mjpeg import MjpegError, MjpegStream, NotMjpegError, checked_size
from framebus.capture_node.pattern import TestPattern
from framebus.common import jpeg
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.redact import redact

log = logging.getLogger("capture_node.sources")

# A frame as a source hands it over: pixels (BGR), or a camera's own JPEG, published as it is.
Picture = np.ndarray | bytes
DEFAULT_FPS = 30.0
TEST_PICTURE_SIZE = (1280, 720)


class SourceError(RuntimeError):
    """A source cannot be opened or read; the message names the (redacted) source."""


@dataclass(frozen=True)
class SourceInfo:
    width: int
    height: int
    fps: float  # the source's own rate; 0 when unknown
    paced: bool  # True: the grab loop must pace reads at fps (files, test picture)
    is_file: bool


def is_video_file(source: str) -> bool:
    """A path to a file, not the test picture, a URL or a device index."""
    return source != "test" and not source.isdigit() and "://" not in source


def picture_size(picture: Picture) -> tuple[int, int]:
    """(width, height): a JPEG's from its frame header (checked when it was read)."""
    if isinstance(picture, bytes):
        return jpeg.frame_size(picture)
    return picture.shape[1], picture.shape[0]


class Source(Protocol):
    info: SourceInfo

    def read(self) -> Picture | None:
        """The next frame, or None at the end of a file or when the stream failed."""

    def rewind(self) -> bool:
        """Go back to the first frame (files); False when not possible."""

    def close(self) -> None: ...


def output_size(config: CameraConfig, width: int, height: int) -> tuple[int, int]:
    """The size frames are published at: the configured width and height; one of them alone
    keeps the source's aspect ratio (rounded to even, as encoders like); neither: the source's."""
    if config.width and config.height:
        return config.width, config.height
    if config.width and width and height:
        return config.width, max(2, round(config.width * height / width / 2) * 2)
    if config.height and width and height:
        return max(2, round(config.height * width / height / 2) * 2), config.height
    return width, height


class TestPatternSource:
    def __init__(self, config: CameraConfig) -> None:
        width, height = output_size(config, *TEST_PICTURE_SIZE)
        self._pattern = TestPattern(config.id, width, height)
        self._frame_number = 0
        self.info = SourceInfo(width, height, config.fps or DEFAULT_FPS, paced=True, is_file=False)

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
        is_file = is_video_file(config.source)
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
        if config.hw_decode != "none":
            params += [cv2.CAP_PROP_HW_ACCELERATION, hw_acceleration(config.hw_decode)]
        backend = cv2.CAP_ANY if isinstance(target, int) else cv2.CAP_FFMPEG
        self._cap = cv2.VideoCapture(target, backend, params)
        if not self._cap.isOpened():
            self._cap.release()
            hint = ""
            if config.hw_decode not in ("none", "any"):
                hint = f" (with hw_decode = {config.hw_decode!r}: try 'any', which falls back to the CPU)"
            raise SourceError(f"cannot open {redact(config.source)}: {explain_failure(config)}{hint}")
        if config.hw_decode != "none" and not self._cap.get(cv2.CAP_PROP_HW_ACCELERATION):
            log.info(
                "camera %s: no hardware decoder available (hw_decode = %r): decoding on the CPU",
                config.id,
                config.hw_decode,
            )
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


class ResizedSource:
    """A camera's frames scaled to the configured size before they are encoded: a worker that
    wants 640x360 for analytics gets it for a quarter of the bytes on the link and of the encode.
    INTER_AREA: the one OpenCV interpolation that averages when shrinking (no aliasing)."""

    def __init__(self, source: Source, config: CameraConfig) -> None:
        self._source = source
        self._config = config
        width, height = output_size(config, source.info.width, source.info.height)
        self.info = replace(source.info, width=width, height=height)

    def read(self) -> Picture | None:
        picture = self._source.read()
        if picture is None:
            return None
        size = picture_size(picture)
        width, height = output_size(self._config, *size)
        if (width, height) == size:
            return picture  # a camera's JPEG already at that size is not even decoded
        image = jpeg.decode_bgr(picture) if isinstance(picture, bytes) else picture
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

    def rewind(self) -> bool:
        return self._source.rewind()

    def close(self) -> None:
        self._source.close()


class MjpegSource:
    """An HTTP MJPEG camera whose JPEGs are published as they come (capture_node/mjpeg.py)."""

    def __init__(self, config: CameraConfig) -> None:
        self._config = config
        self._log = RateLimitedLog(log)
        try:
            self._stream = MjpegStream(config.source, config.open_timeout, config.read_timeout)
        except MjpegError:  # refused, unreachable, timed out: said as for any other URL
            raise SourceError(f"cannot open {redact(config.source)}: {explain_failure(config)}") from None
        self._first = self._next()
        if self._first is None:
            self._stream.close()
            raise SourceError(f"{redact(config.source)}: the MJPEG stream sent no picture")
        width, height = jpeg.frame_size(self._first)
        self.info = SourceInfo(width, height, 0.0, paced=False, is_file=False)

    def _next(self) -> bytes | None:
        try:
            data = self._stream.read()
            if data is not None:
                checked_size(data)
            return data
        except MjpegError as exc:  # the capture reconnects; say why once in a while
            cam = self._config.id
            self._log.warning(f"mjpeg-{cam}", "camera %s: %s", cam, redact(str(exc)))
            return None

    def read(self) -> Picture | None:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return self._next()

    def rewind(self) -> bool:
        return False

    def close(self) -> None:
        self._stream.close()


def hw_acceleration(name: str) -> int:
    """OpenCV's VIDEO_ACCELERATION_* value for a hw_decode name (schema.HwDecode)."""
    return int(getattr(cv2, f"VIDEO_ACCELERATION_{name.upper()}"))


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
        return TestPatternSource(config)  # drawn at the configured size
    source: Source
    try:
        source = MjpegSource(config)  # an HTTP MJPEG camera: its JPEGs pass through
    except NotMjpegError:
        source = OpenCVSource(config)  # any other URL, file or device: decoded by OpenCV
    return ResizedSource(source, config) if config.width or config.height else source
