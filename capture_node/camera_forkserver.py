"""Loaded once, by the forkserver every camera process is forked from (see supervisor.py).

A spawned camera process imported OpenCV, NumPy and ZeroMQ by itself: ~40 MB of its own memory
before reading a frame. Forked from a server that imported them once, it shares those pages
with every other camera (copy-on-write) and starts in milliseconds instead of ~0.5 s.
"""

import gc
import os

# Camera processes do no linear algebra: without this, NumPy's and OpenCV's OpenBLAS each start
# a thread pool and its buffers at import (~10 MB more per process, and threads across a fork).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import setproctitle  # noqa: E402

from framebus.capture_node import camera_process  # noqa: E402, F401  (OpenCV, NumPy, ZeroMQ, simplejpeg)

setproctitle.setproctitle("framebus-camera-forkserver")
# Objects loaded so far live for the whole process: keep the garbage collector from writing to
# them (its bookkeeping would copy every shared page into each camera process).
gc.freeze()
