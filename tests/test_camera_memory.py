"""Camera processes share what their imports load: they are forked from one forkserver that
loaded OpenCV, NumPy and ZeroMQ once (capture_node/camera_forkserver.py), not spawned to load
them each (~40 MB of a camera's own memory before it read a frame)."""

from __future__ import annotations

from pathlib import Path

from tests.support.processes import Processes, wait_until
from tests.test_secret_leaks import children, node_config


def smaps_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/smaps_rollup")


def title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_camera_processes_share_the_imports_of_one_forkserver(nodes: Processes, tmp_path: Path) -> None:
    node, _ = nodes.capture("--config", str(node_config(tmp_path, {"a": "test", "b": "test"})))
    node.wait_for("camera a: streaming")
    node.wait_for("camera b: streaming")
    cameras = wait_until(
        lambda: [p for p in children(node.proc.pid) if title(p).startswith("framebus-camera ")] or None,
        10,
        "camera processes",
    )
    assert isinstance(cameras, list) and len(cameras) == 2
    for pid in cameras:
        assert title(parent(pid)) == "framebus-camera-forkserver"
        # Pages written by the forkserver's imports, not (yet) copied: a spawned process has ~0.
        assert smaps_kb(pid, "Shared_Dirty") > 8 * 1024, smaps_kb(pid, "Shared_Dirty")
        threads = [t.read_text().strip() for t in Path(f"/proc/{pid}/task").glob("*/comm")]
        # grab, publish, pull, native output, reports + ZeroMQ's two: no idle OpenBLAS pools
        assert len(threads) <= 7, threads
