"""Capture node metrics, read from the camera supervisors at scrape time.

Cameras run in their own processes and report their state to the node every 0.25 s; a custom
collector turns those reports into metrics, so no multi-process metrics machinery is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from framebus.capture_node.supervisor import CameraSupervisor
from framebus.common.metrics import STATES


class CaptureCollector(Collector):
    def __init__(self, cameras: Callable[[], dict[str, CameraSupervisor]]) -> None:
        self._cameras = cameras

    def collect(self) -> Iterator[Any]:
        label = ["camera"]
        captured = CounterMetricFamily("framebus_frames_captured", "Frames read from the source", labels=label)
        published = CounterMetricFamily("framebus_frames_published", "Frames encoded and published", labels=label)
        encode = CounterMetricFamily("framebus_encode_seconds", "Time spent JPEG-encoding", labels=label)
        reconnects = CounterMetricFamily("framebus_reconnects", "Streams that died and were reopened", labels=label)
        restarts = CounterMetricFamily(
            "framebus_camera_restarts", "Camera processes killed and restarted by the watchdog", labels=label
        )
        errors = CounterMetricFamily("framebus_errors", "Errors by kind", labels=["camera", "kind"])
        fps = GaugeMetricFamily("framebus_source_fps", "The source's own frame rate", labels=label)
        state = GaugeMetricFamily(
            "framebus_camera_state", "1 for the camera's current state", labels=["camera", "state"]
        )
        for cam_id, camera in self._cameras().items():
            s = camera.state()
            captured.add_metric([cam_id], s.grabbed)
            published.add_metric([cam_id], s.published)
            encode.add_metric([cam_id], s.encode_seconds)
            reconnects.add_metric([cam_id], s.reconnects)
            restarts.add_metric([cam_id], camera.restarts)
            errors.add_metric([cam_id, "open"], s.open_errors)
            errors.add_metric([cam_id, "encode"], s.encode_errors)
            fps.add_metric([cam_id], s.source_fps)
            for name in STATES:
                state.add_metric([cam_id, name], 1.0 if s.state == name else 0.0)
        yield from (captured, published, encode, reconnects, restarts, errors, fps, state)


def register(cameras: Callable[[], dict[str, CameraSupervisor]]) -> None:
    REGISTRY.register(CaptureCollector(cameras))
