"""How many pixels a worker decodes per picture: a 629-byte JPEG may declare 16384x6100 pixels,
and decoding it cost a process worker 0.8 s and 284 MB.

Unless told a number (--max-pixels), a camera's pictures may be as large as the frame it
describes, with a margin (a camera changes resolution between two describe rounds), and never
more than common.jpeg.MAX_DECODE_PIXELS (8K); before a camera has described its size,
FALLBACK_PIXELS. The size is read from the JPEG's own frame header (not the message header's
claim) before anything is decoded. Refusals are counted per camera and logged rate-limited.
"""

from __future__ import annotations

import logging

import numpy as np

from framebus.common import jpeg
from framebus.common.protocol import CameraInfo
from framebus.common.ratelimit import RateLimitedLog
from framebus.worker_node.stats import ReceiveStats

log = logging.getLogger("worker_node.pixels")

MARGIN = 2.0  # in area: up to ~1.4x the described width and height
FALLBACK_PIXELS = 3840 * 2160  # 4K UHD, before the camera described its size
_refusals = RateLimitedLog(log, interval=10.0)


def parse_max_pixels(text: str) -> int:
    """'8000000', '8M', '3840x2160' -> pixels."""
    t = text.strip().lower()
    width, sep, height = t.partition("x")
    try:
        if sep:
            value = int(width) * int(height)
        elif t.endswith("m"):
            value = int(float(t[:-1]) * 1_000_000)
        else:
            value = int(t)
    except ValueError:
        raise ValueError(f"{text!r} is not a pixel count (e.g. 8000000, 8M or 3840x2160)") from None
    if value < 64 * 64:
        raise ValueError(f"{text!r} is fewer than 4096 pixels: no camera picture would decode")
    return value


class PixelLimit:
    """The limit for each camera's pictures; `explicit` (pixels) replaces the described sizes."""

    def __init__(self, explicit: int | None = None) -> None:
        self.explicit = explicit

    def for_camera(self, info: CameraInfo | None) -> int:
        if self.explicit:
            return self.explicit
        if info is not None and info.width and info.height:
            return min(jpeg.MAX_DECODE_PIXELS, max(64 * 64, int(info.width * info.height * MARGIN)))
        return FALLBACK_PIXELS

    def decode_bgr(
        self, camera: str, data: bytes | memoryview, info: CameraInfo | None, stats: ReceiveStats
    ) -> np.ndarray:
        """Decode, or raise JpegError (a refusal is counted in `stats` and logged here)."""
        limit = self.for_camera(info)
        try:
            return jpeg.decode_bgr(data, limit)
        except jpeg.JpegTooLargeError as exc:
            self.refused(camera, exc, stats)
            raise

    def decode_reduced(
        self, camera: str, data: bytes | memoryview, factor: int, info: CameraInfo | None, stats: ReceiveStats
    ) -> np.ndarray:
        try:
            return jpeg.decode_reduced(data, factor, self.for_camera(info))
        except jpeg.JpegTooLargeError as exc:
            self.refused(camera, exc, stats)
            raise

    def refused(self, camera: str, exc: jpeg.JpegTooLargeError, stats: ReceiveStats) -> None:
        stats.too_large += 1
        why = "--max-pixels" if self.explicit else "its described size with a margin; --max-pixels to change"
        _refusals.warning(
            f"large-{camera}",
            "camera %s: refused a JPEG of %dx%d pixels, more than the %s allowed (%s); %d refused so far",
            camera,
            exc.width,
            exc.height,
            f"{exc.limit:,}",
            why,
            stats.too_large,
        )
