"""The process a camera runs in. Isolation is what makes a hung capture recoverable: a read()
stuck in native code (seen in the wild, opencv#22677) cannot be interrupted from Python, but
its process can be killed and started again without touching the node's other cameras. It
also gives each camera its own FFmpeg options (OPENCV_FFMPEG_CAPTURE_OPTIONS is per process),
its own native output (read into redacted, rate-limited log lines naming the camera, see
common/native_output.py) and its own name in `ps`: `framebus-camera ID`.

Messages over the multiprocessing pipe (dataclasses below): to the supervisor, Bound or
BindFailed once, then a Report every REPORT_S; to the camera process, Stop.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection

import cv2
import setproctitle
import zmq

from framebus.capture_node.camera import Camera, CameraState
from framebus.capture_node.config import CameraConfig
from framebus.common.keys import KeyFileError
from framebus.common.logs import setup_logging
from framebus.common.native_output import NativeOutput
from framebus.common.protocol import CameraInfo
from framebus.common.security import CurveFiles

REPORT_S = 0.25


@dataclass(frozen=True)
class Bound:
    endpoint: str  # as bound: a port asked as '*' is a number now
    pull_endpoint: str


@dataclass(frozen=True)
class BindFailed:
    reason: str  # why the camera cannot start; the process exits after sending this


@dataclass(frozen=True)
class Report:
    state: CameraState
    stuck_for: float  # seconds inside one open() or read(), 0 when not in one
    pools: tuple[CameraInfo, ...] = ()  # the streams of the camera's worker pools, for describe


@dataclass(frozen=True)
class Stop:
    """From the supervisor: stop the camera and exit."""


def run(
    config: CameraConfig, status_interval: float, conn: Connection, log_level: str, curve: CurveFiles | None = None
) -> None:
    setproctitle.setproctitle(process_title(config.id))  # `ps` shows which camera this is
    cv2.setNumThreads(1)  # one camera's resize needs no pool of a thread per core in every camera process
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the node stops us
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    native = NativeOutput(config.id)  # FFmpeg's and OpenCV's lines become redacted log records
    native.start()
    setup_logging(log_level)
    ctx = zmq.Context()
    security = None
    try:
        security = (
            curve.server(ctx, announce=False) if curve else None
        )  # keys were checked by the node: errors are rare
        camera = Camera(ctx, config, status_interval, security)
    except Exception as exc:  # a port taken, an address not here: the node says it in one line
        known = isinstance(exc, (zmq.ZMQError, KeyFileError))
        conn.send(BindFailed(str(exc) if known else f"cannot start: {type(exc).__name__}: {exc}"))
        if security is not None:
            security.close()
        ctx.destroy(0)
        native.stop()
        return
    conn.send(Bound(camera.endpoint, camera.pull_endpoint))
    camera.start()
    try:
        while not stop.is_set():
            conn.send(Report(camera.state(), camera.stuck_for(), camera.pool_infos()))
            if conn.poll(REPORT_S) and isinstance(conn.recv(), Stop):
                break
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the node is gone: so are we
    camera.stop(timeout=0.3)
    if security is not None:
        security.close()
    ctx.destroy(0)
    native.stop()


def process_title(camera_id: str) -> str:
    return f"framebus-camera {camera_id}"
