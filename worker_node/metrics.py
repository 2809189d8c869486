"""Worker metrics: per camera frames received, frames skipped by conflation, frame age,
malformed messages, stale time and state, read from the live subscriptions at scrape time.

Registered explicitly by the command that serves them (register), as the capture node does:
nothing is registered on import, and nothing here knows the receiver."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from framebus.common.metrics import STATES
from framebus.worker_node.stats import AGE_BUCKETS
from framebus.worker_node.subscription import STALE, Subscription

WORKER_STATES = (*STATES, STALE)


class WorkerCollector(Collector):
    def __init__(self, subscriptions: Callable[[], Iterable[Subscription]]) -> None:
        self._subscriptions = subscriptions

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
        age = HistogramMetricFamily(
            "framebus_frame_age_seconds",
            "Receive time minus capture time (clock skew between hosts shows here)",
            labels=label,
        )
        now = time.monotonic()
        for sub in list(self._subscriptions()):
            s, name = sub.stats, sub.name
            received.add_metric([name], s.received)
            skipped.add_metric([name], s.dropped)
            malformed.add_metric([name], s.malformed)
            restarts.add_metric([name], s.restarts)
            stale.add_metric([name], s.stale_seconds(now))
            fps.add_metric([name], s.fps)
            for value in WORKER_STATES:
                state.add_metric([name, value], 1.0 if sub.status.state == value else 0.0)
            counts = list(s.age_counts)  # read once: the receiving thread goes on counting
            cumulative, buckets = 0, []
            for bound, count in zip((*(str(b) for b in AGE_BUCKETS), "+Inf"), counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            age.add_metric([name], buckets, s.age_sum)
        yield from (received, skipped, malformed, restarts, stale, fps, state, age)


def register(subscriptions: Callable[[], Iterable[Subscription]]) -> WorkerCollector:
    """Serve the metrics of what `subscriptions()` returns at each scrape (once per process)."""
    collector = WorkerCollector(subscriptions)
    REGISTRY.register(collector)
    return collector
