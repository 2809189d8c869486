"""Per-camera receive statistics: what a status line, `top` and metrics show."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# The most frames a forward jump of `seq` may count as dropped: 2**24, over 4.6 hours at the
# 1000 frames/s a node may describe (docs/protocol.md 5.2). A bigger jump is a publisher that
# started over (or a peer's nonsense): one jump to 2**64-1 must not add 1.8e19 to the count.
MAX_SEQ_GAP = 2**24


@dataclass
class CameraStats:
    received: int = 0
    dropped: int = 0  # sequence gaps: frames conflated away between publisher and us
    malformed: int = 0
    too_large: int = 0  # pictures refused before decoding: more pixels than allowed (pixel_limit)
    restarts: int = 0  # the publisher's sequence started over (node restarted)
    last_age_s: float = 0.0  # receive time minus capture time of the last frame
    last_message: float = field(default_factory=time.monotonic)
    stale_since: float | None = None  # monotonic time the camera went stale
    stale_total: float = 0.0  # seconds stale, finished periods
    _window_start: float = field(default_factory=time.monotonic)
    _window_frames: int = 0
    fps: float = 0.0

    def frame(self, capture_ns: int) -> None:
        self.received += 1
        self._window_frames += 1
        self.last_age_s = max(0.0, time.time() - capture_ns / 1e9)
        self.last_message = time.monotonic()

    def follow(self, last_seq: int, seq: int) -> None:
        """Account for a new frame's `seq` after the last accepted one (not a duplicate)."""
        if last_seq < seq <= last_seq + 1 + MAX_SEQ_GAP:
            self.dropped += seq - last_seq - 1
        else:
            self.restarts += 1  # the publisher started counting again

    def roll_window(self) -> None:
        """Compute fps over the window since the last call (called once per status line)."""
        now = time.monotonic()
        span = now - self._window_start
        if span > 0:
            self.fps = self._window_frames / span
        self._window_start = now
        self._window_frames = 0

    def silent_for(self) -> float:
        return time.monotonic() - self.last_message
