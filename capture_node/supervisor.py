"""Runs one camera in its own process and keeps it running: the per-camera watchdog.

A camera process that dies, stops reporting, or sits inside one open()/read() far longer than
its timeouts allow is killed and started again on the same endpoint; the node's other cameras
never notice. Workers reconnect by themselves (ZeroMQ) and see "reconnecting" meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import msgspec

from framebus.capture_node import camera_process
from framebus.capture_node.camera import COUNTERS, CameraState, backoff_delay
from framebus.capture_node.camera_process import BindFailed, Bound, Report, Stop
from framebus.capture_node.config import CameraConfig, ConfigError
from framebus.common.protocol import CameraInfo
from framebus.common.security import CurveFiles
from framebus.common.words import State

log = logging.getLogger("capture_node.supervisor")

# Not fork (the node has threads and sockets) and not spawn (each camera would import OpenCV,
# NumPy and ZeroMQ by itself, ~40 MB each): a forkserver, a clean process that loaded them once
# (capture_node/camera_forkserver.py) and forks each camera process from there.
_START = multiprocessing.get_context("forkserver")
_START.set_forkserver_preload(["framebus.capture_node.camera_forkserver"])
START_TIMEOUT_S = 30.0
SILENCE_LIMIT_S = 5.0  # a process that sends no report for this long is hung as a whole


def watchdog_limit(config: CameraConfig) -> float:
    """How long one open()/read() may take before the capture counts as hung."""
    return 2 * max(config.open_timeout, config.read_timeout) + 2.0


class CameraSupervisor:
    def __init__(
        self, config: CameraConfig, status_interval: float, log_level: str, curve: CurveFiles | None = None
    ) -> None:
        self.config = config
        self._curve = curve
        self._status_interval = status_interval
        self._log_level = log_level
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = CameraState()
        self._latest_counts = CameraState()
        self._pools: tuple[CameraInfo, ...] = ()  # the streams of the camera's worker pools
        self._carried: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        self._fps_mark = (time.monotonic(), 0.0)
        self._fps = 0.0
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self.endpoint = ""
        self.pull_endpoint = ""
        self.restarts = 0
        self._thread = threading.Thread(target=self._watch, name=f"watch-{config.id}", daemon=True)

    def start(self) -> None:
        """Start the camera process; raises ConfigError if its endpoint cannot be bound."""
        self.endpoint, self.pull_endpoint = self._spawn()
        # Restarts must come back on the same ports, also when the config said "any port".
        self.config = msgspec.structs.replace(self.config, bind=self.endpoint, pull_bind=self.pull_endpoint)
        self._thread.start()

    def _spawn(self) -> tuple[str, str]:
        parent, child = _START.Pipe()
        process = _START.Process(
            target=camera_process.run,
            args=(self.config, self._status_interval, child, self._log_level, self._curve),
            name=f"camera-{self.config.id}",
            daemon=True,
        )
        process.start()
        child.close()
        try:
            endpoints = self._await_bound(parent, process)
        except ConfigError:
            parent.close()
            process.join(2)  # it exits by itself once it said why; a hung one is killed
            if process.is_alive():
                process.kill()
                process.join(2)
            raise
        self._process, self._conn = process, parent
        return endpoints

    def _await_bound(self, conn: Connection, process: BaseProcess) -> tuple[str, str]:
        """The endpoints the new process bound, or ConfigError saying why it could not."""
        cam = self.config.id
        if not conn.poll(START_TIMEOUT_S):
            process.kill()
            raise ConfigError(f"camera {cam}: its process did not start within {START_TIMEOUT_S:.0f} s")
        try:
            message = conn.recv()
        except EOFError:
            process.join(2)
            raise ConfigError(f"camera {cam}: its process exited at start (exit code {process.exitcode})") from None
        if isinstance(message, BindFailed):
            raise ConfigError(f"camera {cam}: {message.reason}")
        if not isinstance(message, Bound):
            raise ConfigError(f"camera {cam}: its process said {type(message).__name__} before it was bound")
        return message.endpoint, message.pull_endpoint

    def state(self) -> CameraState:
        """The camera's state, its counters summed over restarts of its process."""
        with self._lock:
            totals = {c: self._carried[c] + getattr(self._latest_counts, c) for c in COUNTERS}
            return dataclasses.replace(self._state, **totals)  # type: ignore[arg-type]

    def info(self) -> CameraInfo:
        s = self.state()
        fps = self.config.fps or s.source_fps
        return CameraInfo(
            self.config.id,
            self.endpoint,
            s.width,
            s.height,
            fps,
            s.state,
            self.config.delivery,
            s.reason,
            self.pull_endpoint,
            published_fps=self._published_fps(s.published),
            reconnects=s.reconnects + self.restarts,
        )

    def infos(self) -> list[CameraInfo]:
        """The camera's describe entry, and those of its worker pools' streams."""
        return [self.info(), *self._pools]

    def _published_fps(self, published: float) -> float:
        """Frames per second since the previous call at least a second ago."""
        now = time.monotonic()
        with self._lock:
            last_time, last_count = self._fps_mark
            if now - last_time >= 1.0:
                self._fps = min(1000.0, max(0.0, (published - last_count) / (now - last_time)))
                self._fps_mark = (now, published)
            return self._fps

    def _watch(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            problem = self._supervise()
            if self._stop.is_set():
                break
            self._kill()
            with self._lock:  # counters of the dead process carry over to the next one
                self._carried = {c: self._carried[c] + getattr(self._latest_counts, c) for c in COUNTERS}
                self._latest_counts = CameraState()
                self._pools = ()
            attempt += 1
            self.restarts += 1
            delay = backoff_delay(attempt, self.config.reconnect_max)
            log.error("camera %s: %s; restarting its capture in %.1f s", self.config.id, problem, delay)
            with self._lock:
                self._state = dataclasses.replace(
                    self._state, state=State.RECONNECTING, reason=problem, attempt=attempt
                )
            if self._stop.wait(delay):
                break
            try:
                self._spawn()
                attempt = 0
            except ConfigError as exc:
                log.error("%s", exc)

    def _supervise(self) -> str:
        """Read reports until the process needs a restart; returns why (or '' when stopping)."""
        assert self._conn is not None and self._process is not None
        last_report = time.monotonic()
        limit = watchdog_limit(self.config)
        while not self._stop.is_set():
            report = None
            try:
                if self._conn.poll(0.5):
                    report = self._conn.recv()
            except (EOFError, OSError):
                return f"camera process exited (exit code {self._process.exitcode})"
            now = time.monotonic()
            if isinstance(report, Report):
                last_report = now
                with self._lock:
                    self._state = report.state
                    self._latest_counts = report.state
                    self._pools = report.pools
                if report.stuck_for > limit:
                    return f"capture made no progress for {report.stuck_for:.0f} s (hung in open/read)"
            elif now - last_report > SILENCE_LIMIT_S:
                return f"camera process sent no report for {now - last_report:.0f} s"
        return ""

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(2)
        if self._conn is not None:
            self._conn.close()

    def request_stop(self) -> None:
        self._stop.set()
        if self._conn is not None:
            try:
                self._conn.send(Stop())
            except OSError:
                pass

    def stop(self, timeout: float = 0.7) -> None:
        """Ask the process to stop; kill it if it has not within the timeout."""
        self.request_stop()
        self._thread.join(timeout)
        if self._process is not None:
            self._process.join(timeout)
        self._kill()
