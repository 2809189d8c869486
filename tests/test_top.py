"""`worker-node top` against a real node: the table shows node-side and worker-side figures."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pyte

from tests.support.processes import NodeProcess, Processes


def test_top_shows_state_rates_and_age(nodes: Processes) -> None:
    capture, control = nodes.capture("--width", "160", "--height", "120", "--fps", "20")
    os.environ["COLUMNS"] = "160"  # rich sizes its table to the terminal; tests have none
    try:
        # 6 s: the node's published fps is its describe reply's, asked every 2 s. The first reply
        # comes before top subscribes (nothing is encoded for nobody: 0 fps, truly), the second
        # spans the subscription; the last row shows a later one, a whole window of subscribed.
        top: NodeProcess = nodes.worker("top", "--node", control, "--count", "12", "--refresh", "0.5s")
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


def test_top_redraws_in_place_on_a_terminal(nodes: Processes) -> None:
    """On a real terminal (a pty, read by a terminal emulator), each refresh replaces the last:
    log lines (a camera subscribed) print above the table instead of pushing it down, which left
    the first render on screen."""
    _, control = nodes.capture("--width", "160", "--height", "120", "--fps", "10")
    rows, cols = 40, 160
    # A pty from openpty() and a subprocess on it, not pty.fork(): forking this multi-threaded
    # process and running Python in the child may deadlock (Python 3.12 warns of it).
    fd, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    argv = [sys.executable, "-m", "worker_node", "top", "--node", control, "--count", "6", "--refresh", "0.5s"]
    env = dict(os.environ, COLUMNS=str(cols), LINES=str(rows), TERM="xterm-256color")
    top = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env, start_new_session=True)
    os.close(terminal)
    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 1.0)[0]:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child exited: the pty is closed
            break
        if not data:
            break
        stream.feed(data)
    code = top.wait(timeout=10)
    os.close(fd)
    assert code == 0
    shown = [line.rstrip() for line in screen.display if line.strip()]
    assert sum("framebus top" in line for line in shown) == 1, "\n".join(shown)
    assert sum(line.startswith("│ cam1") for line in shown) == 1, "\n".join(shown)
    assert any("camera cam1: subscribed" in line for line in shown), "\n".join(shown)  # above the table
