"""`worker-node process` with real processes: pipelines, failing and slow handlers, several
cameras, the example handlers and the documented Python example."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from framebus import RemoteCapture, processing
from framebus.common import jpeg
from tests.support.handlers_for_tests import WORK_S
from tests.support.pictures import HEIGHT, MESSI, MESSI_FACE, WIDTH, write_sliding_square
from tests.support.processes import ROOT, NodeProcess, Processes

SAVED = re.compile(r"^\d{8}T\d{6}\.\d{6}Z_(?P<camera>[^_]+)_(?P<seq>\d{12})\.jpg$")


def green_pixels(image: np.ndarray) -> int:
    """Pixels of the motion detector's box colour (BGR green; none in the grey source)."""
    b, g, r = (image[:, :, i].astype(int) for i in range(3))
    return int(np.count_nonzero((g > 150) & (r < 110) & (b < 110)))


def start_processor(nodes: Processes, control: str, handler: str, *extra: str) -> tuple[NodeProcess, str]:
    worker = nodes.worker(
        "process", "--node", control, "--camera", "cam1", "--handler", handler, "--control", "tcp://127.0.0.1:*", *extra
    )
    return worker, worker.wait_for(r"control endpoint (\S+)").group(1)


def test_camera_to_motion_worker_to_save_worker_of_the_derived_stream(nodes: Processes, tmp_path: Path) -> None:
    """A pipeline across three processes; the saved files are the annotated frames."""
    video = write_sliding_square(tmp_path / "grey.avi", (128, 128, 128))
    _, control = nodes.capture("--source", str(video), "--camera-id", "cam1", "--loop")
    process, derived = start_processor(nodes, control, "framebus.worker_node.handlers.motion:MotionDetector")

    listing = nodes.worker("describe", "--node", derived)
    assert listing.wait_exit(15) == 0
    assert re.search(r"cam1/annotated\s+\S+", listing.output), listing.output

    out = tmp_path / "saved"
    save = nodes.worker(
        "save", "--node", derived, "--camera", "cam1/annotated", "--out", str(out), "--every-n", "1", "--count", "8"
    )
    assert save.wait_exit(60) == 0, save.output
    files = sorted(p for p in out.iterdir() if SAVED.match(p.name))
    assert len(files) == 8, [p.name for p in out.iterdir()]
    assert {SAVED.match(p.name)["camera"] for p in files} == {"cam1+annotated"}  # type: ignore[index]
    boxed = 0
    for path in files:
        image = jpeg.decode_bgr(path.read_bytes())
        assert image.shape == (HEIGHT, WIDTH, 3)
        boxed += green_pixels(image) > 100
    # The first frame a detector sees has nothing to compare with; every later one has the
    # sliding square boxed.
    assert boxed >= 7, f"only {boxed} of {len(files)} saved frames show a motion box"
    process.wait_for(r"camera cam1: frame \d+ results \{'motion': True, 'boxes': \[\[")
    assert "Traceback" not in process.output
    assert process.stop() < 1.0


def test_a_handler_that_raises_is_logged_and_the_worker_goes_on(nodes: Processes) -> None:
    _, control = nodes.capture("--width", "320", "--height", "240", "--fps", "30")
    process, derived = start_processor(nodes, control, "tests.support.handlers_for_tests:FailEveryOther")
    process.wait_for(r"camera cam1: handler raised on frame \d+; going on with the next frame", timeout=20)
    process.wait_for(r"ValueError: boom on call 2")
    seen_traceback_at = len(process.lines)
    with RemoteCapture(derived, camera="cam1/annotated", timeout=10) as cap:
        calls = []
        for _ in range(6):
            ok, frame = cap.read()
            assert ok and frame is not None and frame.shape == (240, 320, 3)
            assert cap.last is not None
            calls.append(cap.last.meta["results"]["calls"])
    assert all(c % 2 == 1 for c in calls) and calls == sorted(calls), calls
    assert max(calls) > 2 * 3, "the worker stopped handling frames after the first failure"
    assert process.proc.poll() is None
    # Later failures are summarised (rate-limited), not one traceback per frame.
    process.wait_for(r"more failures since the last report", timeout=15, start=seen_traceback_at)
    assert process.stop() < 1.0


def test_a_slow_handler_gets_the_newest_frame_and_results_are_published(nodes: Processes) -> None:
    _, control = nodes.capture("--width", "640", "--height", "360", "--fps", "30")
    process, derived = start_processor(nodes, control, "tests.support.handlers_for_tests:slow")
    interval = 1 / 30
    with RemoteCapture(derived, camera="cam1/annotated", timeout=10) as cap:
        ages, seqs = [], []
        for _ in range(12):
            ok, frame = cap.read()
            assert ok and frame is not None
            assert cap.last is not None
            results = cap.last.meta["results"]
            ages.append(results["age_ms"])
            seqs.append(cap.last.meta["source"]["seq"])
            assert cap.last.meta["handler_ms"] >= WORK_S * 1000
    # Newest-frame guarantee: what the handler gets is never older than its own processing
    # time plus one frame interval (margin for a loaded machine); it skips the frames between.
    bound_ms = (WORK_S + interval) * 1000 + 60
    assert max(ages) <= bound_ms, ages
    assert statistics.median(ages) <= interval * 1000 + 40, ages
    steps = [b - a for a, b in zip(seqs, seqs[1:], strict=False)]
    assert statistics.median(steps) >= 4, f"source frames between handled ones: {steps}"
    process.wait_for(r"camera cam1: frame \d+ results \{'age_ms': ")
    assert process.stop() < 1.0


def test_the_documented_python_example_runs(nodes: Processes) -> None:
    """docs/examples/process_frames.py: processing.run() with a plain function."""
    _, control = nodes.capture("--width", "320", "--height", "240")
    example = nodes.start(
        str(ROOT / "docs" / "examples" / "process_frames.py"), [control, "cam1", "--control", "tcp://127.0.0.1:*"]
    )
    derived = example.wait_for(r"control endpoint (\S+)").group(1)
    with RemoteCapture(derived, camera="cam1/edges", timeout=10) as cap:
        ok, frame = cap.read()
        assert ok and frame is not None and frame.shape == (240, 320, 3)
        assert cap.last is not None and 0 < cap.last.meta["results"]["edge_fraction"] < 1
    assert example.stop() < 1.0


def test_one_worker_serves_several_cameras_in_turn_each_on_its_newest_frame(nodes: Processes, tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    cams = "".join(f'[[camera]]\nid = "{c}"\nwidth = 320\nheight = 240\nfps = 30\n' for c in ("a", "b"))
    config.write_text('[node]\ncontrol = "tcp://127.0.0.1:*"\n' + cams)
    _, control = nodes.capture("--config", str(config))
    process = nodes.worker(
        "process", "--node", control, "--camera", "a", "--camera", "b", "--handler", "tests.support.handlers_for_tests:slow",
        "--control", "tcp://127.0.0.1:*", "--suffix", "slow",
    )  # fmt: skip
    derived = process.wait_for(r"control endpoint (\S+)").group(1)
    for camera in ("a", "b"):
        with RemoteCapture(derived, camera=f"{camera}/slow", timeout=10) as cap:
            ages = []
            for _ in range(4):
                ok, _frame = cap.read()
                assert ok and cap.last is not None and cap.last.meta["source"]["camera"] == camera
                ages.append(cap.last.meta["results"]["age_ms"])
        # Handled in turn with the other camera, yet on a frame fetched just before its turn.
        assert max(ages) <= (WORK_S + 1 / 30) * 1000 + 60, (camera, ages)
    assert process.stop() < 1.0


def test_face_worker_finds_the_face_in_a_camera_showing_a_photo(nodes: Processes, tmp_path: Path) -> None:
    photo = cv2.imread(str(MESSI))
    assert photo is not None, f"{MESSI} is missing: run deploy/install-test-deps.sh"
    video = tmp_path / "photo.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (photo.shape[1], photo.shape[0]))
    for _ in range(10):
        writer.write(photo)
    writer.release()
    _, control = nodes.capture("--source", str(video), "--camera-id", "cam1", "--loop")
    process, derived = start_processor(
        nodes, control, "framebus.worker_node.handlers.faces:FaceDetector", "--suffix", "faces"
    )
    with RemoteCapture(derived, camera="cam1/faces", timeout=15) as cap:
        ok, frame = cap.read()
        assert ok and frame is not None and cap.last is not None
        results = cap.last.meta["results"]
    fx, fy, fw, fh = MESSI_FACE
    assert any(x <= fx + fw / 2 <= x + w and y <= fy + fh / 2 <= y + h for x, y, w, h in results["boxes"]), results
    b, g, r = (frame[:, :, i].astype(int) for i in range(3))
    assert np.count_nonzero((r > 200) & (g > 110) & (g < 210) & (b < 90)) > 50, "no orange box drawn"
    assert process.stop() < 3.0  # it stops once the running detection (up to ~1 s when loaded) returns


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"node": "127.0.0.1:5555"}, "node: '127.0.0.1:5555' has no scheme: did you mean tcp://127.0.0.1:5555?"),
        ({"node": ["tcp://127.0.0.1:5555", "rtsp://cam/1"]}, "node: 'rtsp://cam/1' is a camera URL"),
        ({"control": "tcp://127.0.0.1"}, "control: 'tcp://127.0.0.1' has no port"),
        ({"control": "tcp://0.0.0.0:5575"}, "control: tcp://0.0.0.0:5575 can be reached from other hosts"),
        ({"follow_hosts": ["a;b"]}, "follow host: 'a;b': the host 'a;b' has the character(s) ';'"),
    ],
)
def test_run_refuses_a_bad_endpoint_before_starting(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"node": "tcp://127.0.0.1:9", "camera": "cam1"} | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        processing.run(lambda image, header: None, **arguments)
