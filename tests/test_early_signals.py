"""A stop request in a node's first instants, while it still imports OpenCV and NumPy (about
0.5 s here, seconds on a loaded Pi): it used to print a KeyboardInterrupt traceback (Ctrl-C) or
die by -15 (SIGTERM, e.g. systemd stopping a unit that just started). Now it ends quietly with
status 0, as a stop request to a running node does. The signal is sent the moment the process
maps a library that only the node's imports load: mid-import, whatever the machine's speed."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import wait_until

BIN = Path(sys.executable).parent
COMMANDS = {  # the console scripts as installed, and python -m
    "capture-node": [str(BIN / "capture-node"), "--insecure", "--control", "tcp://127.0.0.1:*"],
    "worker-node": [str(BIN / "worker-node"), "save", "--node", "tcp://127.0.0.1:9", "--out", "{tmp}"],
    "python -m framebus.capture_node": [
        sys.executable,
        "-m",
        "capture_node",
        "--insecure",
        "--control",
        "tcp://127.0.0.1:*",
    ],
    "python -m framebus.worker_node": [
        sys.executable,
        "-m",
        "worker_node",
        "save",
        "--node",
        "tcp://127.0.0.1:9",
        "--out",
        "{tmp}",
    ],
}
MID_IMPORT = ("numpy", "cv2", "zmq")  # loaded only by the node's own imports, after the entry point


def wait_mid_import(pid: int) -> str:
    """Poll /proc/PID/maps (no event exists for "now importing") until a node library shows."""

    def mapped() -> str:
        maps = Path(f"/proc/{pid}/maps").read_text()
        return next((lib for lib in MID_IMPORT if f"/{lib}/" in maps or f"/{lib}." in maps), "")

    return str(wait_until(mapped, 30, f"process {pid} to map one of {MID_IMPORT}", interval=0.001))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_stop_request_during_start_up_ends_quietly(command: str, sig: signal.Signals, tmp_path: Path) -> None:
    argv = [a.format(tmp=tmp_path) for a in COMMANDS[command]]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        library = wait_mid_import(proc.pid)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, f"{command}: {sig.name} while loading {library}: status {proc.returncode}\n{output}"
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
