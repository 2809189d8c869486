"""The consumer side, the same loop for every system: get a frame, note when it was in hand,
and for the slow consumer work on it for 3 frame intervals.

- fast: take each frame as it comes, as bytes from the wire where the system allows it
  (framebus read_jpeg, imagezmq recv_jpg, the stack's JPEG); NetGear always decodes inside.
- slow: take a frame, decode it to BGR if the system did not, note the time, then "process"
  for SLOW_WORK_S (a sleep: the simulated work).

framebus is consumed through the real worker side: worker_node.RemoteCapture.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from framebus.common import jpeg

FRAME_INTERVAL_S = 1 / 30
SLOW_WORK_S = 3 * FRAME_INTERVAL_S  # a consumer 3x slower than the camera: 100 ms per frame
# Set by the soak: helpers keep only the last N per-frame records, so that their own logs do
# not show up as memory growth (54,000 frames in 30 min would add ~6 MB of Python ints).
KEEP_LAST_ENV = "FRAMEBUS_BENCH_KEEP_LAST"


def frame_log() -> MutableSequence[int]:
    """A list, or a bounded deque when KEEP_LAST_ENV is set."""
    keep = int(os.environ.get(KEEP_LAST_ENV, "0"))
    return deque(maxlen=keep) if keep > 0 else []


@dataclass(frozen=True)
class Delivery:
    seq: int  # the sender's frame number; -1 when the system cannot carry it
    capture_ns: int  # 0 when the system cannot carry it
    jpeg: bytes | memoryview | None = None
    image: np.ndarray | None = None


class Receiver(Protocol):
    def receive(self, timeout: float) -> Delivery | None:
        """The next frame as the system hands it over, or None after timeout."""

    def close(self) -> None: ...


def emit(event: dict[str, Any]) -> None:
    """One JSON event line for the orchestrator (benchmarks/processes.py)."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def consume(receiver: Receiver, mode: str, stopped: Callable[[], bool], out: Path) -> None:
    """Run until stopped() is true; write the per-frame records to out (JSON)."""
    seqs, captured, received = frame_log(), frame_log(), frame_log()
    first = True
    try:
        while not stopped():
            delivery = receiver.receive(0.5)
            if delivery is None:
                continue
            if mode == "slow" and delivery.image is None and delivery.jpeg is not None:
                jpeg.decode_bgr(delivery.jpeg)  # the consumer wants pixels
            received.append(time.time_ns())
            seqs.append(delivery.seq)
            captured.append(delivery.capture_ns)
            if first:
                emit({"ready": True})
                first = False
            if mode == "slow":
                time.sleep(SLOW_WORK_S)  # the simulated processing of this frame
    finally:
        out.write_text(json.dumps({"seq": list(seqs), "capture_ns": list(captured), "recv_ns": list(received)}))
        receiver.close()


class FramebusReceiver:
    """worker_node.RemoteCapture on a capture node's describe endpoint: read_jpeg() (no
    decode) for the fast consumer, read() (decoded BGR) for the slow one."""

    def __init__(self, node: str, decode: bool) -> None:
        from framebus.worker_node import RemoteCapture

        self._cap = RemoteCapture(node, camera="cam1", timeout=5.0)
        if not self._cap.isOpened():
            raise RuntimeError(f"RemoteCapture did not open: {self._cap.error}")
        self._decode = decode

    def receive(self, timeout: float) -> Delivery | None:
        self._cap.timeout = timeout
        if self._decode:
            ok, image = self._cap.read()
            data = None
        else:
            ok, data = self._cap.read_jpeg()
            image = None
        if not ok or self._cap.last is None:
            return None
        return Delivery(self._cap.last.seq, self._cap.last.capture_ns, data, image)

    def close(self) -> None:
        self._cap.release()
