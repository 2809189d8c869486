"""Your function on the newest frames of remote cameras, its output republished as streams that
any worker reads like a camera: ``processing.run(handler, node=..., camera=...)``.

A handler is called as ``handler(image, header)``: ``image`` the newest decoded BGR frame (a
``numpy.ndarray``, yours to modify), ``header`` its ``FrameHeader``. It returns ``None``, a dict of
results, an output frame, or ``(frame, results)``. A class is made once per camera.

``processing.run(handler, node=..., camera="door", pool="faces")`` on several hosts makes a worker
pool: each frame goes to one of them, and the capture node publishes their results as the one
stream ``door/faces`` (docs/pools.md).
"""

from __future__ import annotations

from framebus.worker_node.handler import Handler
from framebus.worker_node.process import run

__all__ = ["Handler", "run"]
