"""worker_node.metrics in-process: registered by the command that serves them, never on import,
read from the subscriptions at scrape time."""

from __future__ import annotations

import subprocess
import sys
import time

from prometheus_client import CollectorRegistry, generate_latest

from framebus.common.words import State
from framebus.worker_node.metrics import WorkerCollector
from framebus.worker_node.stats import ReceiveStats
from framebus.worker_node.subscription import STALE, CameraStatus


class Sub:
    def __init__(self, name: str, state: str) -> None:
        self.name, self.stats, self.status = name, ReceiveStats(), CameraStatus(state)


def test_importing_the_worker_registers_no_metrics() -> None:
    code = (
        "from prometheus_client import REGISTRY, generate_latest\n"
        "import worker_node.cli, worker_node.remote_capture, worker_node.metrics\n"
        "print(generate_latest(REGISTRY).decode())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "framebus_" not in out.stdout


def test_scrape_reads_counters_states_and_the_age_histogram() -> None:
    streaming, stale = Sub("cam1", State.STREAMING), Sub("cam2", STALE)
    now_ns = time.time_ns()
    for age_s in (0.005, 0.03, 0.03, 3.0, 60.0):
        streaming.stats.frame(now_ns - int(age_s * 1e9))
    stale.stats.stale_since = time.monotonic() - 2.0
    registry = CollectorRegistry()
    registry.register(WorkerCollector(lambda: [streaming, stale]))  # type: ignore[list-item]
    text = generate_latest(registry).decode()
    expected = [
        'framebus_frames_received_total{camera="cam1"} 5.0',
        'framebus_camera_state{camera="cam1",state="streaming"} 1.0',
        'framebus_camera_state{camera="cam2",state="stale"} 1.0',  # the worker's own state
        'framebus_camera_state{camera="cam2",state="streaming"} 0.0',
        'framebus_frame_age_seconds_bucket{camera="cam1",le="0.01"} 1.0',
        'framebus_frame_age_seconds_bucket{camera="cam1",le="0.05"} 3.0',
        'framebus_frame_age_seconds_bucket{camera="cam1",le="5.0"} 4.0',
        'framebus_frame_age_seconds_bucket{camera="cam1",le="+Inf"} 5.0',
        'framebus_frame_age_seconds_count{camera="cam1"} 5.0',
    ]
    lines = text.splitlines()
    assert [line for line in expected if line not in lines] == []
    stale_line = next(
        line for line in text.splitlines() if line.startswith('framebus_stale_seconds_total{camera="cam2"}')
    )
    assert float(stale_line.split()[-1]) >= 2.0
