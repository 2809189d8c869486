"""Per-camera receive statistics: what a status line, `top`, the web page and metrics show.

The fps window is rolled in one place, by the sink driver (worker_node.sink), never by whoever
shows it."""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

# The most frames a forward jump of `seq` may count as dropped: 2**24, over 4.6 hours at the
# 1000 frames/s a node may describe (docs/protocol.md 5.2). A bigger jump is a publisher that
# started over (or a peer's nonsense): one jump to 2**64-1 must not add 1.8e19 to the count.
MAX_SEQ_GAP = 2**24
AGE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # seconds, for the frame age histogram


@dataclass
class ReceiveStats:
    received: int = 0
    dropped: int = 0  # sequence gaps: frames conflated away between publisher and us
    malformed: int = 0
    too_large: int = 0  # pictures refused before decoding: more pixels than allowed (pixel_limit)
    restarts: int = 0  # the publisher's sequence started over (node restarted)
    last_age_s: float = 0.0  # receive time minus capture time of the last frame
    last_message: float = field(default_factory=time.monotonic)
    stale_since: float | None = None  # monotonic time the camera went stale
    stale_total: float = 0.0  # seconds stale, finished periods
    age_counts: list[int] = field(default_factory=lambda: [0] * (len(AGE_BUCKETS) + 1))  # per bucket, +Inf last
    age_sum: float = 0.0
    _window_start: float = field(default_factory=time.monotonic)
    _window_frames: int = 0
    fps: float = 0.0

    def frame(self, capture_ns: int) -> None:
        self.received += 1
        self._window_frames += 1
        self.last_age_s = max(0.0, time.time() - capture_ns / 1e9)
        self.age_counts[bisect.bisect_left(AGE_BUCKETS, self.last_age_s)] += 1
        self.age_sum += self.last_age_s
        self.last_message = time.monotonic()

    def follow(self, last_seq: int, seq: int) -> None:
        """Account for a new frame's `seq` after the last accepted one (not a duplicate)."""
        if last_seq < seq <= last_seq + 1 + MAX_SEQ_GAP:
            self.dropped += seq - last_seq - 1
        else:
            self.restarts += 1  # the publisher started counting again

    def roll_window(self) -> None:
        """Compute fps over the window since the last call (the sink driver's, once per window)."""
        now = time.monotonic()
        span = now - self._window_start
        if span > 0:
            self.fps = self._window_frames / span
        self._window_start = now
        self._window_frames = 0

    def silent_for(self) -> float:
        return time.monotonic() - self.last_message

    def stale_seconds(self, now: float) -> float:
        """Time stale in all, the current period included."""
        return self.stale_total + (now - self.stale_since if self.stale_since is not None else 0.0)
