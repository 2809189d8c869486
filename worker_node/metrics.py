"""Worker metrics: per camera frames received, frames skipped by conflation, frame age,
malformed messages, stale time and status, read from the live receivers at scrape time."""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from common.metrics import STATES

if TYPE_CHECKING:
    from worker_node.receiver import FrameReceiver

FRAME_AGE = Histogram(
    "framebus_frame_age_seconds",
    "Receive time minus capture time (clock skew between hosts shows here)",
    ["camera"],
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
)
_receivers: weakref.WeakSet[FrameReceiver] = weakref.WeakSet()


def track(receiver: FrameReceiver) -> None:
    _receivers.add(receiver)


class WorkerCollector(Collector):
    def collect(self) -> Iterator[Any]:
        label = ["camera"]
        received = CounterMetricFamily("framebus_frames_received", "Frames received", labels=label)
        skipped = CounterMetricFamily(
            "framebus_frames_skipped", "Frames skipped by conflation (sequence gaps)", labels=label
        )
        malformed = CounterMetricFamily("framebus_malformed_messages", "Malformed messages dropped", labels=label)
        restarts = CounterMetricFamily("framebus_publisher_restarts", "Times the sequence started over", labels=label)
        stale = CounterMetricFamily("framebus_stale_seconds", "Time with nothing received", labels=label)
        fps = GaugeMetricFamily(
            "framebus_receive_fps", "Frames received per second (last status interval)", labels=label
        )
        state = GaugeMetricFamily(
            "framebus_camera_state", "1 for the camera's current state", labels=["camera", "state"]
        )
        now = time.monotonic()
        for receiver in list(_receivers):
            for sub in list(receiver.subscriptions.values()):
                s, name = sub.stats, sub.name
                received.add_metric([name], s.received)
                skipped.add_metric([name], s.dropped)
                malformed.add_metric([name], s.malformed)
                restarts.add_metric([name], s.restarts)
                stale.add_metric([name], s.stale_total + (now - s.stale_since if s.stale_since else 0.0))
                fps.add_metric([name], s.fps)
                for value in STATES:
                    state.add_metric([name, value], 1.0 if sub.status.state == value else 0.0)
        yield from (received, skipped, malformed, restarts, stale, fps, state)


REGISTRY.register(WorkerCollector())
