"""The hand-off between a camera's grab thread and its publish thread.

The FFmpeg backend ignores CAP_PROP_BUFFERSIZE, so a reader that does not keep draining falls
seconds behind. The grab thread therefore reads continuously and the slot keeps only the
newest frame. For every-frame delivery the slot is lossless instead: put() waits until the
previous frame was taken, which paces a file at the speed of its slowest consumer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grabbed:
    image: np.ndarray | bytes  # bytes: a camera's own JPEG (capture_node/mjpeg.py)
    capture_ns: int
    number: int  # counts grabbed frames, from 0


class FrameSlot:
    def __init__(self, lossless: bool = False) -> None:
        self._lossless = lossless
        self._cond = threading.Condition()
        self._frame: Grabbed | None = None
        self._taken = True
        self._closed = False
        self._interrupted = False
        self._count = 0

    def put(self, image: np.ndarray | bytes, capture_ns: int) -> bool:
        """Offer a frame; False once the slot is closed (the camera is stopping)."""
        with self._cond:
            if self._lossless:
                self._cond.wait_for(lambda: self._taken or self._closed)
            if self._closed:
                return False
            self._frame = Grabbed(image, capture_ns, self._count)
            self._count += 1
            self._taken = False
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> Grabbed | None:
        """The newest frame not taken before, waiting up to timeout; None if none came (or
        interrupt() was called)."""
        with self._cond:
            if not self._cond.wait_for(lambda: not self._taken or self._closed or self._interrupted, timeout):
                return None
            self._interrupted = False
            if self._taken:
                return None
            self._taken = True
            self._cond.notify_all()
            return self._frame

    def newest(self) -> Grabbed | None:
        with self._cond:
            return self._frame

    def interrupt(self) -> None:
        """Wake a waiting take() without a frame (something else needs the taker's attention)."""
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
