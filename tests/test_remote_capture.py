"""RemoteCapture's contract against a real capture node process."""

from __future__ import annotations

import itertools
import logging
import socket
import time
from typing import Any

import cv2
import numpy as np
import pytest
import zmq

from framebus.common.protocol import Frame, decode
from framebus.worker_node import RemoteCapture
from tests.support.processes import Processes

PASSWORD = "S3cret-pw"


def simulate_work(seconds: float) -> None:
    """A consumer's processing time (this is the workload, not synchronisation)."""
    time.sleep(seconds)


def test_reads_newest_frames_like_videocapture(nodes: Processes) -> None:
    capture, control = nodes.capture("--width", "320", "--height", "240", "--fps", "30")
    with RemoteCapture(control, camera="cam1", timeout=10) as cap:
        assert cap.isOpened()
        ok, frame = cap.read()
        assert ok and isinstance(frame, np.ndarray) and frame.shape == (240, 320, 3) and frame.dtype == np.uint8
        assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 320
        assert cap.get(cv2.CAP_PROP_FRAME_HEIGHT) == 240
        assert cap.get(cv2.CAP_PROP_FPS) == 30
        assert cap.get(cv2.CAP_PROP_BRIGHTNESS) == 0.0  # unsupported, as in OpenCV
        assert cap.last is not None and cap.last.camera == "cam1"
        assert 0 <= cap.age < 1.0

        seqs = []
        for _ in range(5):  # never the same frame twice
            assert cap.grab()
            assert cap.last is not None
            seqs.append(cap.last.seq)
        assert seqs == sorted(set(seqs)), seqs
        assert cap.get(cv2.CAP_PROP_POS_FRAMES) == seqs[-1]

        ok, data = cap.read_jpeg()
        assert ok and data is not None and data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
        frames = list(itertools.islice(cap, 3))
        assert len(frames) == 3 and all(f.shape == (240, 320, 3) for f in frames)
        assert cap.status.state == "streaming"

    assert not cap.isOpened()
    assert cap.read() == (False, None)


def test_frame_endpoint_alone_works(nodes: Processes) -> None:
    capture, control = nodes.capture("--width", "160", "--height", "120")
    endpoint = capture.wait_for(r"frames on (tcp://\S+)").group(1)
    with RemoteCapture(endpoint, timeout=10) as cap:
        ok, frame = cap.read()
        assert ok and frame is not None and frame.shape == (120, 160, 3)
        assert cap.last is not None and cap.last.camera == "cam1"


def test_unknown_camera_and_absent_node_do_not_open() -> None:
    with zmq.Context() as ctx:  # a port nobody listens on
        probe = ctx.socket(zmq.ROUTER)
        port = probe.bind_to_random_port("tcp://127.0.0.1")
        probe.close(0)
    started = time.monotonic()
    cap = RemoteCapture(f"tcp://127.0.0.1:{port}", camera="cam1", timeout=1.0)
    assert not cap.isOpened()
    assert time.monotonic() - started < 3.0
    assert "no describe reply" in cap.error
    assert cap.read() == (False, None)
    cap.release()


def test_unknown_camera_is_named(nodes: Processes) -> None:
    capture, control = nodes.capture("--width", "160", "--height", "120")
    cap = RemoteCapture(control, camera="nope", timeout=5)
    assert not cap.isOpened()
    assert "no camera 'nope'" in cap.error and "cam1" in cap.error
    cap.release()


def test_read_times_out_when_the_node_stops(nodes: Processes) -> None:
    capture, control = nodes.capture("--width", "160", "--height", "120")
    with RemoteCapture(control, camera="cam1", timeout=10) as cap:
        assert cap.read()[0]
        capture.stop()
        cap.timeout = 0.5
        while cap.grab():  # what was already in flight
            pass
        started = time.monotonic()
        assert cap.read() == (False, None)
        assert 0.4 < time.monotonic() - started < 2.0


def test_slow_consumer_stays_fresh_while_a_fifo_falls_behind(nodes: Processes) -> None:
    """A consumer 3x slower than the camera gets frames at most ~one interval old; a plain
    queue-based subscriber on the same stream falls further behind every second."""
    interval, work = 1 / 30, 0.1
    capture, control = nodes.capture("--width", "640", "--height", "360", "--fps", "30")
    endpoint = capture.wait_for(r"frames on (tcp://\S+)").group(1)
    ctx = zmq.Context()
    fifo = ctx.socket(zmq.SUB)  # what a plain PUB/SUB consumer does
    fifo.setsockopt(zmq.SUBSCRIBE, b"")
    fifo.connect(endpoint)
    fifo_ages = []
    ages = []
    try:
        with RemoteCapture(control, camera="cam1", timeout=10) as cap:
            assert cap.read()[0]
            assert fifo.poll(10_000)
            started = time.monotonic()
            while time.monotonic() - started < 4.0:
                ok, _ = cap.read()
                assert ok
                ages.append(cap.age)
                fifo_msg = fifo.recv()
                decoded = decode(fifo_msg)
                assert isinstance(decoded, Frame)
                fifo_ages.append(time.time() - decoded.header.capture_ns / 1e9)
                simulate_work(work)
    finally:
        fifo.close(0)
        ctx.term()
    p99 = float(np.percentile(ages, 99))
    # At read time a frame is at most one interval old plus delivery; slack for a loaded box.
    assert p99 <= interval + 0.06, f"p99 age {p99 * 1000:.0f} ms, ages {[round(a * 1000) for a in ages]}"
    assert np.mean(ages[-5:]) < np.mean(ages[:5]) + 0.03, "ages grow over time"
    assert fifo_ages[-1] > fifo_ages[0] + 1.0, (
        f"the FIFO did not fall behind: {fifo_ages[0]:.2f} -> {fifo_ages[-1]:.2f} s"
    )


def test_readme_example_runs(nodes: Processes) -> None:
    capture, control = nodes.capture("--width", "320", "--height", "240")
    example = nodes.start("docs/examples/read_remote_camera.py", [control, "cam1", "--frames", "5"])
    assert example.wait_exit(30) == 0, example.output
    assert len([line for line in example.output.splitlines() if line.startswith("frame ")]) == 5
    assert "320x240" in example.output


def test_pull_mode_returns_fresh_frames_only_when_asked(nodes: Processes) -> None:
    capture, control = nodes.capture("--width", "320", "--height", "240", "--fps", "30")
    with RemoteCapture(control, camera="cam1", timeout=10, pull=True) as cap:
        assert cap.isOpened(), cap.error
        captured, ages = [], []
        for _ in range(10):
            ok, frame = cap.read()
            assert ok and frame is not None and frame.shape == (240, 320, 3)
            assert cap.last is not None
            captured.append(cap.last.capture_ns)
            ages.append(cap.age)
            simulate_work(0.1)  # 3 frames come and go meanwhile: the next read gets the newest
        # Captured 3 frames apart, not 1 (sequence numbers count frames encoded, and with only
        # a pull waiting, only the frames asked for are encoded).
        gaps = np.diff(captured) / 1e9
        assert (gaps >= 1.5 / 30).all(), f"pull mode must skip to the newest frame: {gaps}"
        assert max(ages) < 0.1, ages
    capture.stop()
    with RemoteCapture(control, camera="cam1", timeout=1, pull=True) as cap:
        assert not cap.isOpened() and "no describe reply" in cap.error


@pytest.mark.parametrize(
    ("source", "options", "reason"),
    [
        (
            "127.0.0.1:5555",
            {"camera": "cam1"},
            "source: '127.0.0.1:5555' has no scheme: did you mean tcp://127.0.0.1:5555?",
        ),
        ("edge1:5556", {}, "did you mean tcp://edge1:5556?"),
        (
            f"rtsp://admin:{PASSWORD}@10.0.0.7/s",
            {"camera": "cam1"},
            "source: 'rtsp://admin:***@10.0.0.7/s' is a camera URL",
        ),
        ("tcp://10.0.0.1:0;127.0.0.1:5555", {}, "names a source address"),
        ("tcp://127.0.0.1", {}, "has no port"),
        (
            "tcp://127.0.0.1:9",
            {"camera": "cam1", "follow_hosts": ["127.1"]},
            "follow host: '127.1': '127.1' is not an IPv4",
        ),
    ],
)
def test_a_bad_source_does_not_raise_it_says_how_to_fix_it(
    source: str, options: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The README promises that opening never raises: not ZMQError, not EndpointError."""
    with caplog.at_level(logging.WARNING, "worker_node.remote_capture"):
        cap = RemoteCapture(source, timeout=1.0, **options)
    assert not cap.isOpened() and reason in cap.error, cap.error
    assert [r.getMessage() for r in caplog.records] == [f"RemoteCapture: {cap.error}"]
    assert PASSWORD not in caplog.text and cap.read() == (False, None)
    cap.release()


def test_a_camera_described_on_another_host_is_not_followed(nodes: Processes) -> None:
    """A rogue node (reached at 127.0.0.1) describes a camera at a port on 127.0.0.2: RemoteCapture
    does not connect there unless told with follow_hosts."""
    foreign = socket.socket()
    foreign.bind(("127.0.0.2", 0))
    foreign.listen(8)
    foreign.settimeout(0)
    endpoint = f"tcp://127.0.0.2:{foreign.getsockname()[1]}"
    rogue = nodes.start("tests/support/rogue_publisher.py", ["--elsewhere", endpoint, "--valid-replies-only"])
    control = rogue.wait_for(r"rogue control (\S+)").group(1)
    try:
        cap = RemoteCapture(control, camera="rogue-elsewhere0", timeout=5)
        assert not cap.isOpened()
        assert f"describes camera 'rogue-elsewhere0' at {endpoint}: not followed" in cap.error, cap.error
        assert "--follow-host 127.0.0.2 would allow it" in cap.error
        cap.release()
        with pytest.raises(BlockingIOError):
            foreign.accept()  # no connection came
        with RemoteCapture(control, camera="rogue-elsewhere0", timeout=5, follow_hosts=["127.0.0.2"]) as cap:
            assert cap.isOpened(), cap.error
            foreign.settimeout(10)
            foreign.accept()[0].close()  # the deliberate exception is followed
    finally:
        foreign.close()
