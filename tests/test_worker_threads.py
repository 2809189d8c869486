"""A worker whose own code fails says why in one line and stops (exit status 1): it never goes on
without its receive path (a web page showing cameras as "streaming" for ever). A message that
breaks the decoder (a bug: its contract is ProtocolError only) is counted as malformed, and the
worker goes on with the next one. Real worker processes; the failures are a real hostile frame
and, for the bugs to come, a fault injected into one function (tests/support/inject_fault.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from framebus.common import jpeg
from framebus.common.protocol import FrameHeader, encode_frame
from tests.support.fake_node import FakeNode
from tests.support.processes import ROOT, NodeProcess, Processes, wait_until
from tests.support.wire import frame_dict, packed, raw
from tests.test_web import get

CAMERA = "deep"
# decode() raised RecursionError for such a frame (counted as a decoder bug); once it raises
# ProtocolError as its contract says, the frame is an ordinary malformed one. Either way: dropped.
DROPPED = r"stream \S+: dropped a malformed message: (it broke the decoder \(RecursionError|.*meta)"
STOP_WITHIN_S = 10.0


def deep_or_valid(seq: int) -> bytes:
    """Every other frame's `meta` nests 900 levels deep: within msgpack's limit, beyond Python's
    recursion budget (decode() raised RecursionError)."""
    picture = jpeg.encode_bgr(np.full((48, 64, 3), 128, np.uint8), 80)
    if seq % 2:
        nested: list[object] = []
        for _ in range(900):
            nested = [nested]
        return raw(1, packed(frame_dict(CAMERA, seq, meta={"a": nested})), picture)
    now = time.time_ns()
    return encode_frame(FrameHeader(CAMERA, seq, now, now, 64, 48), picture)


@pytest.fixture
def deep_node() -> Iterator[FakeNode]:
    node = FakeNode(CAMERA, 64, 48, deep_or_valid)
    try:
        yield node
    finally:
        node.close()


def assert_one_line_no_traceback(worker: NodeProcess, pattern: str) -> None:
    lines = [line for line in worker.output.splitlines() if re.search(pattern, line)]
    assert len(lines) == 1, worker.output[-3000:]
    assert "Traceback" not in worker.output, worker.output[-3000:]


# ----------------------------------------------------------------------------- a message that breaks the decoder


def test_save_worker_counts_a_frame_that_breaks_the_decoder_and_goes_on(
    nodes: Processes, deep_node: FakeNode, tmp_path: Path
) -> None:
    out = tmp_path / "saved"
    worker = nodes.worker(
        "save", "--node", deep_node.endpoint, "--out", str(out), "--every-n", "1", "--status-interval", "1s"
    )
    worker.wait_for(r"malformed \d+", 30)  # in its status line
    saved = len(list(out.glob("*.jpg")))
    wait_until(lambda: len(list(out.glob("*.jpg"))) >= saved + 20, 20, "20 more valid frames saved")
    assert worker.proc.poll() is None, worker.output[-3000:]
    broke = [line for line in worker.output.splitlines() if re.search(DROPPED, line)]
    assert 1 <= len(broke) <= 10, worker.output[-3000:]  # rate-limited
    assert "Traceback" not in worker.output
    assert worker.stop() < 2.0 and worker.proc.returncode == 0


def test_web_viewer_counts_a_frame_that_breaks_the_decoder_and_goes_on(nodes: Processes, deep_node: FakeNode) -> None:
    worker = nodes.worker("web", "--node", deep_node.endpoint, "--listen", "127.0.0.1:0")
    url = worker.wait_for(r"web viewer on (http://\S+)").group(1)

    def camera() -> dict[str, object]:
        import json

        found = {c["camera"]: c for c in json.loads(get(url + "api/status")[2])["cameras"]}
        return found.get(CAMERA, {})

    wait_until(lambda: int(camera().get("malformed", 0) or 0) > 10, 30, "malformed frames counted")
    first = int(camera()["received"])  # type: ignore[call-overload]
    wait_until(lambda: int(camera()["received"]) > first + 20, 20, "valid frames still received")  # type: ignore[call-overload]
    assert camera()["state"] == "streaming"
    assert "Traceback" not in worker.output
    assert worker.stop() < 2.0 and worker.proc.returncode == 0


def test_process_worker_counts_a_frame_that_breaks_the_decoder_and_goes_on(
    nodes: Processes, deep_node: FakeNode
) -> None:
    worker = nodes.worker(
        "process", "--node", deep_node.endpoint, "--camera", CAMERA, "--control", "tcp://127.0.0.1:*",
        "--handler", "framebus.worker_node.handlers.motion:MotionDetector",
    )  # fmt: skip
    worker.wait_for(DROPPED, 30)
    worker.wait_for(rf"camera {CAMERA}: frame \d+ results", 30)  # valid frames are handled
    assert worker.proc.poll() is None and "Traceback" not in worker.output, worker.output[-3000:]
    assert worker.stop() < 3.0 and worker.proc.returncode == 0


# ----------------------------------------------------------------------------- a bug in the worker's own code


def injected(nodes: Processes, target: str, after: int, *args: str) -> NodeProcess:
    return nodes.start("tests/support/inject_fault.py", [target, str(after), "--", *args])


def test_web_viewer_stops_with_one_line_when_its_receiving_thread_dies(nodes: Processes) -> None:
    _, control = nodes.capture("--width", "160", "--height", "120", "--fps", "15")
    worker = injected(
        nodes,
        "framebus.worker_node.receiver:FrameReceiver.poll",
        40,
        "web",
        "--node",
        control,
        "--listen",
        "127.0.0.1:0",
    )
    url = worker.wait_for(r"web viewer on (http://\S+)").group(1)
    assert worker.wait_exit(STOP_WITHIN_S + 20) == 1, worker.output
    assert_one_line_no_traceback(worker, r"ERROR .*thread 'receive' died: RuntimeError: injected fault")
    with pytest.raises(OSError):  # nothing serves the last state any more
        get(url + "api/status")


@pytest.mark.parametrize(
    ("command", "target"),
    [
        ("save", "framebus.worker_node.save:SaveSink.offer"),
        ("top", "framebus.worker_node.receiver:FrameReceiver.poll"),
        ("process", "framebus.worker_node.process:FrameProcessor._handle"),
    ],
)
def test_a_worker_stops_with_one_line_on_an_internal_error(
    nodes: Processes, tmp_path: Path, command: str, target: str
) -> None:
    _, control = nodes.capture("--width", "160", "--height", "120", "--fps", "15")
    extra = {
        "save": ["--out", str(tmp_path / "out"), "--every-n", "1"],
        "top": ["--refresh", "0.2s"],
        "process": [
            "--camera",
            "cam1",
            "--control",
            "tcp://127.0.0.1:*",
            "--handler",
            "framebus.worker_node.handlers.motion:MotionDetector",
        ],
    }[command]
    worker = injected(nodes, target, 5, command, "--node", control, *extra)
    assert worker.wait_exit(STOP_WITHIN_S + 20) == 1, worker.output
    assert_one_line_no_traceback(worker, r"ERROR .*(internal error|died): RuntimeError: injected fault")
    debug = injected(nodes, target, 5, "--log-level", "DEBUG", command, "--node", control, *extra)
    assert debug.wait_exit(STOP_WITHIN_S + 20) == 1
    assert "Traceback" in debug.output and "injected fault" in debug.output  # for a bug report


def test_any_thread_that_dies_is_reported_and_stops_the_process() -> None:
    """Threads started by libraries too: threads.install() makes their death one line and a stop."""
    script = (
        "import logging, threading, select\n"
        "from framebus.common import threads\n"
        "from framebus.common.shutdown import ShutdownSignals\n"
        "logging.basicConfig(level='INFO')\n"
        "threads.install()\n"
        "signals = ShutdownSignals()\n"
        "def boom(): raise ValueError('from a library thread')\n"
        "threading.Thread(target=boom, name='lib').start()\n"
        "select.select([signals.fd], [], [], 10)\n"
        "print('stop requested', signals.requested, threads.failure())\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
    )
    assert "stop requested True thread 'lib' died: ValueError: from a library thread" in run.stdout, run
    assert "Traceback" not in run.stderr, run.stderr
