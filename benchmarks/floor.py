"""The decode + encode floor: what a capture node cannot go below per frame.

cv2.VideoCapture.read() of the clip (opened as the capture node opens it) and a JPEG encode at
quality 80 by the node's own encoder (common.jpeg: simplejpeg, 4:2:0), in one thread, CPU
time of the whole process (FFmpeg's decoder threads included) per frame.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.source_clip import QUALITY, PacedReader
from framebus.common import jpeg

WARM_UP_FRAMES = 15


def measure_floor(clip: Path, seconds: float, paced: bool) -> dict[str, float]:
    """Paced: at the clip's 30 fps, as the node reads it; unpaced: as fast as it goes."""
    reader = PacedReader(clip, paced=paced)
    try:
        for _ in range(WARM_UP_FRAMES):
            jpeg.encode_bgr(reader.read()[0], QUALITY)
        frames, size = 0, 0
        cpu0, wall0 = time.process_time(), time.monotonic()
        while time.monotonic() - wall0 < seconds:
            image, _ = reader.read()
            size += len(jpeg.encode_bgr(image, QUALITY))
            frames += 1
        cpu = time.process_time() - cpu0
    finally:
        reader.close()
    return {
        "paced": paced,
        "frames": frames,
        "cpu_s": round(cpu, 3),
        "ms_per_frame": round(1000 * cpu / frames, 3),
        "jpeg_kb": round(size / frames / 1000, 1),
    }
