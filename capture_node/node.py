"""A capture node: its cameras (each in its own supervised process) and its control endpoint,
started and stopped together."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import msgspec
import zmq

from framebus.capture_node.config import CameraConfig, ConfigError, NodeConfig
from framebus.capture_node.exposure import curve_files
from framebus.capture_node.supervisor import CameraSupervisor
from framebus.common.control import ControlServer
from framebus.common.keys import KeyFileError
from framebus.common.protocol import CameraInfo
from framebus.common.redact import redact
from framebus.common.security import CurveServer

log = logging.getLogger("capture_node")


class CaptureNode:
    def __init__(
        self,
        config: NodeConfig,
        reload_from: Callable[[NodeConfig], NodeConfig] | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.config = config
        self._reload_from = reload_from
        self._log_level = log_level
        self._ctx = zmq.Context()
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraSupervisor] = {}
        self._wanted: dict[str, CameraConfig] = {}  # as configured (a bound port may differ)
        self._control: ControlServer | None = None
        self._security: CurveServer | None = None
        self._curve = curve_files(config)  # keys are loaded once, at start

    def start(self) -> None:
        try:
            if self._curve is not None:
                try:
                    self._security = self._curve.server(self._ctx)
                except KeyFileError as exc:
                    raise ConfigError(str(exc)) from None
            try:
                self._control = ControlServer(
                    self._ctx, self.config.node.control, self.config.node.name, self.camera_infos, self._security
                )
            except zmq.ZMQError as exc:
                raise ConfigError(f"control endpoint: {exc}") from None
            errors = self._add_all(self.config.cameras)
            if errors:
                raise errors[0]
        except Exception:
            self.stop()
            raise
        self._control.start()
        log.info("control endpoint %s", self._control.endpoint)

    def _add_all(self, cameras: tuple[CameraConfig, ...] | list[CameraConfig]) -> list[ConfigError]:
        """Start camera processes in parallel (each takes ~0.5 s to import OpenCV)."""
        errors: list[ConfigError] = []

        def add(cam: CameraConfig) -> None:
            try:
                self._add(cam)
            except ConfigError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=add, args=(cam,)) for cam in cameras]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return errors

    def _add(self, cam: CameraConfig) -> None:
        camera = CameraSupervisor(cam, self.config.node.status_interval, self._log_level, self._curve)
        camera.start()
        with self._lock:
            self._cameras[cam.id] = camera
            self._wanted[cam.id] = cam
        log.info("camera %s: source %s, frames on %s (%s)", cam.id, redact(cam.source), camera.endpoint, cam.delivery)

    def camera_infos(self) -> list[CameraInfo]:
        with self._lock:
            cameras = list(self._cameras.values())
        return [info for c in cameras for info in c.infos()]

    def cameras(self) -> dict[str, CameraSupervisor]:
        with self._lock:
            return dict(self._cameras)

    def reload(self) -> None:
        """Apply a changed config file: start added cameras, stop removed or changed ones. A
        camera that did not change is not touched: it keeps its process and its endpoints,
        whatever its place in the file. A bad file is reported and the running cameras stay
        as they are. The allow-list is re-read too (camera processes re-read it on change by
        themselves)."""
        if self._security is not None:
            self._security.request_reload()
        if self._reload_from is None:
            log.info("reload: no config file to reload (started from the command line)")
            return
        with self._lock:
            running = msgspec.structs.replace(self.config, cameras=tuple(self._wanted.values()))
        try:
            new = self._reload_from(running)
        except ConfigError as exc:
            log.error("reload: %s; keeping the running configuration", exc)
            return
        fixed = ("control", "name", "key", "allow", "insecure")  # bound or loaded once, at start
        changed = [f"node.{f}" for f in fixed if getattr(new.node, f) != getattr(self.config.node, f)]
        if changed:
            log.warning("reload: %s: takes effect when the node restarts", ", ".join(changed))
            kept = msgspec.structs.replace(new.node, **{f: getattr(self.config.node, f) for f in fixed})
            new = msgspec.structs.replace(new, node=kept)
        wanted = {c.id: c for c in new.cameras}
        all_changed = new.node.status_interval != self.config.node.status_interval
        gone = {
            cam_id: camera
            for cam_id, camera in self.cameras().items()
            if all_changed or wanted.get(cam_id) != self._wanted.get(cam_id)
        }
        for camera in gone.values():
            camera.request_stop()  # all at once, so they wind down in parallel
        for cam_id, camera in gone.items():
            camera.stop()
            with self._lock:
                del self._cameras[cam_id]
                del self._wanted[cam_id]
            log.info("camera %s: stopped (removed or changed in config)", cam_id)
        self.config = new
        for error in self._add_all([cam for cam in new.cameras if cam.id not in self.cameras()]):
            log.error("reload: %s", error)

    def stop(self) -> None:
        if self._control is not None:
            self._control.stop()
        cameras = list(self.cameras().values())
        for camera in cameras:
            camera.request_stop()  # all at once, so they wind down in parallel
        for camera in cameras:
            camera.stop()
        if self._security is not None:
            self._security.close()
        self._ctx.destroy(0)
