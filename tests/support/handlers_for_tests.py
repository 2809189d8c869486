"""Handlers that `worker-node process` loads in the tests (as tests.support.handlers_for_tests:NAME)."""

from __future__ import annotations

import time

import numpy as np

from framebus import FrameHeader

WORK_S = 0.2


class FailEveryOther:
    """Raises on every other frame; returns a count on the others."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image: np.ndarray, header: FrameHeader) -> dict[str, int]:
        self.calls += 1
        if self.calls % 2 == 0:
            raise ValueError(f"boom on call {self.calls}")
        return {"calls": self.calls}


def slow(image: np.ndarray, header: FrameHeader) -> dict[str, float]:
    """Takes WORK_S per frame; reports how old the frame was when the handler got it."""
    age_ms = (time.time_ns() - header.capture_ns) / 1e6
    time.sleep(WORK_S)  # the handler's processing time: this is the workload, not synchronisation
    return {"age_ms": round(age_ms, 1), "mean": float(image.mean())}
