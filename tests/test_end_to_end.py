"""Real capture and worker node processes over real ZeroMQ sockets on loopback."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np

from framebus.common import jpeg
from framebus.worker_node import RemoteCapture
from tests.support.media import HEIGHT, WIDTH, frame_number, write_numbered_video
from tests.support.mjpeg_server import MjpegCamera
from tests.support.processes import Processes, wait_until

SAVED = re.compile(r"^\d{8}T\d{6}\.\d{6}Z_(?P<camera>[^_]+)_(?P<seq>\d{12})\.jpg$")


def saved_files(out: Path) -> dict[str, list[int]]:
    """camera -> sorted sequence numbers of the complete files in out."""
    found: dict[str, list[int]] = {}
    for path in sorted(out.iterdir()) if out.exists() else []:
        m = SAVED.match(path.name)
        if m:
            found.setdefault(m["camera"], []).append(int(m["seq"]))
    return found


def test_every_nth_frame_of_a_file_is_saved_exactly(nodes: Processes, tmp_path: Path) -> None:
    """The seed recipe's job: every K-th frame of a video, nothing missed, nothing extra."""
    video = write_numbered_video(tmp_path / "numbered.avi", 121)
    out = tmp_path / "saved"
    capture, control = nodes.capture(
        "--source", str(video), "--camera-id", "file1", "--every-frame", "--as-fast-as-possible"
    )
    worker = nodes.worker("save", "--node", control, "--out", str(out), "--every-n", "10", "--count", "13")
    assert worker.wait_exit(60) == 0, worker.output

    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if not SAVED.match(n)], f"stray or temporary files: {names}"
    assert saved_files(out) == {"file1": list(range(0, 121, 10))}
    for path in sorted(out.iterdir()):
        image = jpeg.decode_bgr(path.read_bytes())
        assert image.shape == (HEIGHT, WIDTH, 3)
        seq = int(SAVED.match(path.name)["seq"])  # type: ignore[index]
        assert frame_number(image) == seq, f"{path.name} holds frame {frame_number(image)}"
    capture.wait_for(r"camera file1: end of video file")
    assert capture.stop() < 1.0


def test_two_cameras_reach_one_worker_and_neither_starves(nodes: Processes, tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        """
[node]
name = "edge-test"
control = "tcp://127.0.0.1:*"

[[camera]]
id = "left"
width = 320
height = 240
fps = 20

[[camera]]
id = "right"
width = 320
height = 240
fps = 20
"""
    )
    capture, control = nodes.capture("--config", str(config))
    out = tmp_path / "saved"
    worker = nodes.worker("save", "--node", control, "--out", str(out), "--every-n", "1", "--duration", "6s")
    assert worker.wait_exit(30) == 0, worker.output
    counts = {cam: len(seqs) for cam, seqs in saved_files(out).items()}
    # 6 s at 20 fps is 120 frames each; discovery takes a moment, a loaded machine more.
    assert set(counts) == {"left", "right"}, counts
    assert min(counts.values()) >= 40, counts
    assert max(counts.values()) <= 1.6 * min(counts.values()), f"one camera starved: {counts}"


def test_worker_learns_cameras_added_to_a_running_node(nodes: Processes, tmp_path: Path) -> None:
    camera = '[[camera]]\nid = "{}"\nwidth = 160\nheight = 120\nfps = 10\n'
    config = tmp_path / "node.toml"
    config.write_text('[node]\ncontrol = "tcp://127.0.0.1:*"\n' + camera.format("first"))
    capture, control = nodes.capture("--config", str(config))
    out = tmp_path / "saved"
    worker = nodes.worker("save", "--node", control, "--out", str(out), "--every-n", "1")
    wait_until(lambda: "first" in saved_files(out), 15, "frames of the first camera")

    config.write_text('[node]\ncontrol = "tcp://127.0.0.1:*"\n' + camera.format("first") + camera.format("added"))
    capture.send(signal.SIGHUP)
    capture.wait_for(r"camera added: source test")
    wait_until(lambda: "added" in saved_files(out), 15, "frames of the camera added later")

    listing = nodes.worker("describe", "--node", control)
    assert listing.wait_exit(15) == 0
    assert re.search(r"first\s+streaming\s+160x120", listing.output), listing.output
    assert re.search(r"added\s+streaming\s+160x120", listing.output), listing.output
    offset = re.search(r"clock: the node is ([\d.]+) ms (ahead of|behind) this host", listing.output)
    assert offset and abs(float(offset.group(1))) < 50, "one machine, one clock: the estimate must be ~0"
    assert worker.stop() < 1.0
    assert capture.stop() < 1.0


def test_sigterm_and_sigint_stop_nodes_within_a_second(nodes: Processes, tmp_path: Path) -> None:
    capture, control = nodes.capture("--width", "640", "--height", "360")
    worker = nodes.worker("save", "--node", control, "--out", str(tmp_path), "--every", "1s")
    worker.wait_for(r"camera cam1: subscribed")
    wait_until(lambda: saved_files(tmp_path), 15, "a first saved file")
    assert worker.stop(signal.SIGINT) < 1.0
    assert worker.proc.returncode == 0
    assert capture.stop(signal.SIGTERM) < 1.0
    assert capture.proc.returncode == 0
    assert "Traceback" not in capture.output + worker.output


def test_bad_config_is_a_clear_error(nodes: Processes, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[camera]]\nid = "cam1"\nquality = 400\n')
    node = nodes.start("capture_node", ["--config", str(config)])
    assert node.wait_exit(15) == 2
    assert f"{config}: camera[0].quality: must be between 1 and 100, got 400" in node.output
    assert "Traceback" not in node.output


def test_save_worker_keeps_going_when_disk_is_full(nodes: Processes, tmpfs: Callable[[str], Path]) -> None:
    small = tmpfs("256k")
    capture, control = nodes.capture("--width", "640", "--height", "360", "--fps", "10")
    worker = nodes.worker("save", "--node", control, "--out", str(small), "--every-n", "1")
    worker.wait_for(r"the disk is full .*; frame skipped", timeout=30)
    assert worker.proc.poll() is None, "worker died on a full disk"
    # Stopped first: a running worker may be between writing a temporary file and removing it.
    assert worker.stop() < 1.0
    files = list(small.iterdir())
    assert files and not [f for f in files if f.name.endswith(".tmp")], [f.name for f in files]
    for f in files:  # every file that exists is a complete JPEG
        assert f.read_bytes()[-2:] == b"\xff\xd9"


def test_decoded_frames_have_the_published_size(nodes: Processes) -> None:
    capture, control = nodes.capture("--width", "640", "--height", "360")
    with RemoteCapture(control, camera="cam1") as cap:
        ok, frame = cap.read()
        assert ok and isinstance(frame, np.ndarray)
        assert frame.shape == (360, 640, 3)


def test_http_mjpeg_camera_is_a_source(nodes: Processes) -> None:
    camera = MjpegCamera(fps=15)
    try:
        capture, control = nodes.capture("--source", camera.url, "--camera-id", "ipcam")
        capture.wait_for(r"camera ipcam: streaming")
        with RemoteCapture(control, camera="ipcam", timeout=10) as cap:
            numbers = []
            for _ in range(5):
                ok, frame = cap.read()
                assert ok and frame is not None and frame.shape == (HEIGHT, WIDTH, 3)
                numbers.append(frame_number(frame))
        assert numbers == sorted(numbers) and len(set(numbers)) == 5, numbers
        assert capture.stop() < 1.0
    finally:
        camera.close()


def test_a_status_message_never_displaces_an_unread_frame(nodes: Processes, tmp_path: Path) -> None:
    """Conflation keeps only the newest message: the 'ended' status that follows a file's last
    frame would replace that frame for a reader that had not read it yet, unless the status
    carries it. A reader arriving after the end sees nothing but status messages."""
    video = write_numbered_video(tmp_path / "short.avi", 15)
    capture, control = nodes.capture("--source", str(video), "--camera-id", "clip")
    capture.wait_for(r"camera clip: end of video file")
    with RemoteCapture(control, camera="clip", timeout=5) as cap:
        ok, frame = cap.read()
        assert ok and frame is not None, "the status did not carry the last frame"
        assert frame_number(frame) == 14
        assert cap.status.state == "ended"
        cap.timeout = 2.5  # statuses keep coming every second, with the same frame
        assert cap.read() == (False, None), "a repeated status must not count as a new frame"
