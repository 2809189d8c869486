"""Don't encode for nobody: a camera that nobody subscribes to and nobody pulls from keeps
reading its source (so that it stays fresh) but encodes and publishes nothing; a subscriber or
a pull request gets a fresh frame at once, never one encoded before the camera went idle."""

from __future__ import annotations

from pathlib import Path

from framebus.worker_node import RemoteCapture
from tests.support.processes import Processes, hold, wait_until
from tests.test_metrics import free_port, metric


def start(nodes: Processes, tmp_path: Path) -> tuple[str, int]:
    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\ncontrol = "tcp://127.0.0.1:*"\n[[camera]]\nid = "c"\nwidth = 160\nheight = 120\nfps = 20\n'
    )
    port = free_port()
    capture, control = nodes.capture("--config", str(config), "--metrics-port", str(port))
    capture.wait_for("camera c: streaming")
    return control, port


def test_nothing_is_encoded_while_nobody_watches(nodes: Processes, tmp_path: Path) -> None:
    control, port = start(nodes, tmp_path)
    captured = metric(port, 'framebus_frames_captured_total{camera="c"}')
    published = metric(port, 'framebus_frames_published_total{camera="c"}')
    first = wait_until(lambda: captured() >= 10 or None, 15, "frames to be read")
    assert first and published() == 0, "frames were encoded for nobody"
    with RemoteCapture(control, camera="c", timeout=10) as cap:
        ok, frame = cap.read()
        assert ok and frame is not None and cap.age < 1.0
        wait_until(lambda: published() >= 10 or None, 15, "frames to be published to the subscriber")
    # Reports reach the metrics a few times a second: wait until the count stands still.
    counts = [published()]

    def settled() -> bool:
        hold(0.6)
        counts.append(published())
        return counts[-1] == counts[-2]

    wait_until(settled, 15, "the published count to stop after the subscriber left")
    now = captured()
    wait_until(lambda: captured() >= now + 30 or None, 15, "frames read while nobody watches")
    assert published() == counts[-1], "frames were still encoded after the subscriber left"


def test_a_pull_after_an_idle_spell_gets_a_fresh_frame(nodes: Processes, tmp_path: Path) -> None:
    control, _ = start(nodes, tmp_path)
    with RemoteCapture(control, camera="c", timeout=10) as cap:
        assert cap.read()[0]  # frames were encoded and offered to the pull server
    hold(2.0)  # idle: the pull server's last frame grows old
    with RemoteCapture(control, camera="c", timeout=10, pull=True) as cap:
        ok, _ = cap.read()
        assert ok and cap.age < 1.0, f"a pull got a frame {cap.age:.1f} s old"
