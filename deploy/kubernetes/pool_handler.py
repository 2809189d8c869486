"""The example pool's handler (ConfigMap framebus-pool-handler, on the members' PYTHONPATH):
`worker-node process --handler pool_handler:brightness`. Put your model here, or in your own
image. It stands in for a model that takes WORK_S per frame, so that a pool of N members
visibly processes N times the frames of one (docs/kubernetes.md)."""

from __future__ import annotations

import time

import numpy as np

from framebus import FrameHeader

WORK_S = 0.2  # the stand-in model's time per frame


def brightness(image: np.ndarray, header: FrameHeader) -> dict[str, float]:
    """The frame's mean brightness, after WORK_S of (pretend) inference."""
    started = time.monotonic()
    value = float(image.mean())
    time.sleep(max(0.0, WORK_S - (time.monotonic() - started)))  # the model's time: workload, not a wait
    return {"brightness": round(value, 1)}
