"""`make bench-cameras` end to end at its smallest: the real multi-mount RTSP server, a capture
node reading every mount, one subscriber per camera, the floor in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.processes import REPO


def test_bench_cameras_reads_every_mount(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "benchmarks.cameras", "--counts", "2", "--sources", "rtsp,file"]
    argv += ["--seconds", "2", "--floor-seconds", "1", "--out", str(tmp_path)]
    subprocess.run(argv, cwd=REPO, check=True, timeout=240, stdout=subprocess.DEVNULL)
    results = json.loads((tmp_path / "cameras.json").read_text())
    assert set(results["floor"]) == {"rtsp", "file"}
    assert [(r["source"], r["cameras"]) for r in results["runs"]] == [("rtsp", 2), ("file", 2)]
    for run in results["runs"]:
        assert len(run["fps"]) == 2 and min(run["fps"]) > 0, run  # every camera delivered
        assert run["capture_cpu_percent"] > 0 and run["pss_per_camera_mb"] > 0
    assert "| rtsp | 2 |" in (tmp_path / "cameras.md").read_text()
