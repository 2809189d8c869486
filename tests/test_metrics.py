"""Prometheus metrics of real nodes, scraped over HTTP while frames flow and cameras die."""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path

from framebus.worker_node import RemoteCapture
from tests.support.processes import Processes, wait_until

PASSWORD = "metrics-S3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """`name{labels}` -> value, for every sample."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def reachable(host: str, port: int) -> bool:
    """Does anything accept a connection at host:port? (127.0.0.2 reaches what is bound to
    0.0.0.0, never what is bound to 127.0.0.1.)"""
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


def metric(port: int, name: str) -> Callable[[], float]:
    return lambda: scrape(port).get(name, 0.0)


def test_capture_node_metrics_move_with_frames_and_show_a_dead_camera(nodes: Processes, tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\ncontrol = "tcp://127.0.0.1:*"\n'
        '[[camera]]\nid = "good"\nwidth = 160\nheight = 120\nfps = 20\n'
        f'[[camera]]\nid = "dead"\nsource = "rtsp://admin:{PASSWORD}@127.0.0.1:9/x"\nreconnect_max = 0.5\n'
    )
    port = free_port()
    capture, control = nodes.capture("--config", str(config), "--metrics-port", str(port))
    capture.wait_for(rf"metrics on http://127\.0\.0\.1:{port}/metrics")
    assert not reachable("127.0.0.2", port), "metrics listen beyond loopback without being told to"
    published = metric(port, 'framebus_frames_published_total{camera="good"}')
    with RemoteCapture(control, camera="good", timeout=10):  # nothing is encoded for nobody
        first = wait_until(published, 15, "frames to be published")
        wait_until(lambda: published() >= first + 10, 15, "the published count to move")  # type: ignore[operator]
    samples = scrape(port)
    assert (
        samples['framebus_frames_captured_total{camera="good"}']
        >= samples['framebus_frames_published_total{camera="good"}']
    )
    assert samples['framebus_encode_seconds_total{camera="good"}'] > 0
    assert samples['framebus_camera_state{camera="good",state="streaming"}'] == 1
    errors = metric(port, 'framebus_errors_total{camera="dead",kind="open"}')
    before = wait_until(errors, 15, "open errors of the dead camera")
    wait_until(lambda: errors() > before, 15, "open errors to keep counting")  # type: ignore[operator]
    assert scrape(port)['framebus_camera_state{camera="dead",state="source-error"}'] == 1
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert PASSWORD not in text and "rtsp://" not in text
    assert capture.stop() < 1.0


def test_worker_metrics_count_frames_age_and_staleness(nodes: Processes, tmp_path: Path) -> None:
    capture, control = nodes.capture("--width", "160", "--height", "120", "--fps", "20")
    port = free_port()
    worker = nodes.worker(
        "--metrics-port", str(port), "save", "--node", control, "--out", str(tmp_path), "--every", "1s"
    )
    worker.wait_for(rf"metrics on http://127\.0\.0\.1:{port}/metrics")
    assert not reachable("127.0.0.2", port), "metrics listen beyond loopback without being told to"
    received = metric(port, 'framebus_frames_received_total{camera="cam1"}')
    first = wait_until(received, 15, "frames to be received")
    wait_until(lambda: received() >= first + 10, 15, "the received count to move")  # type: ignore[operator]
    samples = scrape(port)
    assert samples['framebus_frame_age_seconds_count{camera="cam1"}'] >= 10
    assert (
        samples['framebus_frame_age_seconds_bucket{camera="cam1",le="0.1"}']
        >= 0.9 * samples['framebus_frame_age_seconds_count{camera="cam1"}']
    )
    assert samples['framebus_camera_state{camera="cam1",state="streaming"}'] == 1
    capture.stop()
    wait_until(
        lambda: scrape(port).get('framebus_camera_state{camera="cam1",state="stale"}') == 1,
        15,
        "the camera to be reported stale",
    )
    stale = metric(port, 'framebus_stale_seconds_total{camera="cam1"}')
    wait_until(lambda: stale() > 0.5, 15, "stale time to accumulate")
    assert re.search(r"camera cam1: stale", worker.output)
    assert worker.stop() < 1.0


def test_metrics_on_a_host_given_listen_there_and_warn(nodes: Processes, tmp_path: Path) -> None:
    port = free_port()
    worker = nodes.worker(
        "--metrics-port", f"0.0.0.0:{port}", "save", "--node", "tcp://127.0.0.1:9", "--out", str(tmp_path)
    )
    worker.wait_for(rf"metrics on http://0\.0\.0\.0:{port}/metrics")
    warning = worker.wait_for(r"WARNING.*the metrics endpoint .*").group(0)
    assert warning.endswith(
        f"the metrics endpoint 0.0.0.0:{port} has no login: anyone who can reach it reads camera ids, states and "
        "counters (see docs/security.md)"
    )
    assert reachable("127.0.0.2", port)
    assert worker.stop() < 2.0
