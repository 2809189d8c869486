"""`worker-node top` against a real node: the table shows node-side and worker-side figures."""

from __future__ import annotations

import os
import re

from tests.processes import NodeProcess, Processes


def test_top_shows_state_rates_and_age(nodes: Processes) -> None:
    capture, control = nodes.capture("--width", "160", "--height", "120", "--fps", "20")
    os.environ["COLUMNS"] = "160"  # rich sizes its table to the terminal; tests have none
    try:
        top: NodeProcess = nodes.worker("top", "--node", control, "--count", "8", "--refresh", "0.5s")
        assert top.wait_exit(30) == 0, top.output
    finally:
        del os.environ["COLUMNS"]
    rows = [line for line in top.output.splitlines() if line.startswith("│ cam1")]
    assert rows, top.output
    cells = [c.strip() for c in rows[-1].strip("│").split("│")]
    name, node_state, received, source_fps, published_fps, received_fps, age_ms, drops, reconnects = cells
    assert (name, node_state, received) == ("cam1", "streaming", "streaming")
    assert float(source_fps) == 20.0
    assert 15 <= float(published_fps) <= 25 and 10 <= float(received_fps) <= 25
    assert re.fullmatch(r"\d+", age_ms) and int(age_ms) < 200
    assert reconnects == "0"
