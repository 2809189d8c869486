"""common/native_output.py: what native code writes to fds 1 and 2 becomes redacted,
rate-limited log lines naming the camera; heavy output never blocks the writer; a failing
reader is not silent.

The fd-level tests run in a child process (capturing the test runner's own fds would swallow
pytest's output) and write with libc's write(), as FFmpeg and OpenCV do.
"""

from __future__ import annotations

import logging
import re
import sys

import pytest

from framebus.common.native_output import NativeOutput, parse_line
from tests.support.processes import NodeProcess

PASSWORD = "Hunter2/x@y:z"  # noqa: S105 - a test password, the one that must not show
BASIC = "YWRtaW46SHVudGVyMi94QHk6eg=="  # base64 of admin:Hunter2/x@y:z

PRELUDE = f"""
import ctypes, logging, os, sys, time
from framebus.common.logs import setup_logging
from framebus.common.native_output import NativeOutput
native = NativeOutput("door", repeat_interval=60.0, lines_per_s=50)
native.start()
setup_logging("INFO")
libc = ctypes.CDLL(None)
def native_write(data: bytes, fd: int = 2) -> None:
    view = memoryview(data)
    while view:
        written = libc.write(fd, bytes(view[:1 << 20]), min(len(view), 1 << 20))
        assert written > 0, "write(2) failed"
        view = view[written:]
PASSWORD = {PASSWORD!r}
BASIC_TOKEN = {BASIC.encode()!r}
print("python stdout rtsp://admin:" + PASSWORD + "@cam/x")
"""


def run_script(body: str, timeout: float = 60.0) -> str:
    child = NodeProcess([sys.executable, "-c", PRELUDE + body])
    code = child.wait_exit(timeout)
    assert code == 0, child.output
    return child.output


def test_native_lines_become_redacted_log_lines_that_name_the_camera_once() -> None:
    output = run_script(
        """
native_write(b"[ WARN:0@0.151] global cap.cpp:212 open VIDEOIO(FFMPEG): Authorization: Basic """
        + BASIC
        + """\\n")
for i in range(40):  # a camera retrying: the same message, other addresses and numbers
    native_write(f"[tcp @ 0x55{i:010x}] Connection to rtsp://admin:{PASSWORD}@127.0.0.1:{i} failed\\n".encode())
native_write(b"[OPENCV:FFMPEG:16] Authorization: Basic " + BASIC_TOKEN + b"\\n", fd=1)  # OpenCV's FFmpeg callback printf()s
native_write(b"half a line, ")
native_write(b"then the rest\\r[rtsp @ 0x1] progress line ending in a carriage return\\r")
logging.getLogger("capture_node.camera").warning("camera door: cannot open rtsp://admin:%s@cam/x", PASSWORD)
print("python stderr rtsp://admin:" + PASSWORD + "@cam/x", file=sys.stderr)
native.stop()
"""
    )
    assert PASSWORD not in output
    assert BASIC not in output
    assert "[tcp @" not in output and "[ WARN:" not in output, "a raw native line got through"
    retries = re.findall(
        r"WARNING capture_node.native: camera door: ffmpeg tcp: Connection to rtsp://admin:\*\*\*@127\.0\.0\.1:\d+ failed",
        output,
    )
    assert len(retries) == 1, output
    assert (
        "WARNING capture_node.native: camera door: opencv: cap.cpp:212 open VIDEOIO(FFMPEG): Authorization: Basic ***"
        in output
    )
    assert "camera door: half a line, then the rest" in output
    assert "camera door: ffmpeg rtsp: progress line ending in a carriage return" in output
    assert "capture_node.camera: camera door: cannot open rtsp://admin:***@cam/x" in output
    assert "python stderr rtsp://admin:***@cam/x" in output
    assert "python stdout rtsp://admin:***@cam/x" in output
    assert "ERROR capture_node.native: camera door: ffmpeg: Authorization: Basic ***" in output


def test_heavy_native_output_never_blocks_the_writer() -> None:
    """256 MB of native output: a reader that logged every line would take minutes and the
    writer would block on the full pipe; past the line budget the reader drops it unread."""
    output = run_script(
        """
line = b"[h264 @ 0x5581e4c0] error while decoding MB 12 34, bytestream -7\\n"
block = line * ((1 << 20) // len(line))
started = time.monotonic()
for _ in range(256):
    native_write(block)
print(f"WROTE 256 MB IN {time.monotonic() - started:.2f} S", file=sys.stdout, flush=True)
native.stop()
""",
        timeout=120,
    )
    took = float(re.search(r"WROTE 256 MB IN ([\d.]+) S", output).group(1))  # type: ignore[union-attr]
    assert took < 30, f"the writer was held up {took:.1f} s"
    dropped = re.findall(r"camera door: dropped (\d+) lines of native output \(more than 50 per second\)", output)
    assert sum(int(n) for n in dropped) > 3_000_000, output  # 256 MiB / 70-byte lines, all but a few
    assert len(output.splitlines()) < 10, output


def test_a_failure_while_logging_a_line_is_reported_and_reading_goes_on() -> None:
    output = run_script(
        """
import framebus.common.native_output as module
real_redact = module.redact
def failing_redact(text: str) -> str:
    if "BOOM" in text:
        raise RuntimeError("injected failure")
    return real_redact(text)
module.redact = failing_redact
native_write(b"BOOM\\n")
native_write(b"[tcp @ 0x1] the next line still arrives\\n")
native.stop()
"""
    )
    assert "ERROR capture_node.native: camera door: cannot log native output" in output
    assert "camera door: ffmpeg tcp: the next line still arrives" in output


def test_a_reader_that_cannot_read_says_so_and_native_writes_still_never_block() -> None:
    output = run_script(
        """
os.close(native._read_fd)  # what a bug elsewhere closing the wrong fd would do
libc.write(2, b"wake the reader up\\n", 19)  # may fail: the pipe may have no reader left
native._thread.join(10)
assert not native._thread.is_alive(), "the reader is still running"
started = time.monotonic()
for _ in range(64):
    native_write(b"x" * (1 << 20))  # 64 MB into a pipe nobody reads would block at once
print(f"WROTE IN {time.monotonic() - started:.2f} S", file=sys.stdout, flush=True)
"""
    )
    assert re.search(
        r"ERROR capture_node.native: camera door: reading native output failed \(.*Bad file descriptor", output
    )
    assert "WROTE IN" in output


def test_native_line_forms() -> None:
    assert parse_line("[ WARN:0@0.151] global cap.cpp:212 open VIDEOIO(FFMPEG): backend") == (
        logging.WARNING,
        "opencv: cap.cpp:212 open VIDEOIO(FFMPEG): backend",
    )
    assert parse_line("[ERROR:0@1.5] global cap.cpp:166 open can't open camera by index") == (
        logging.ERROR,
        "opencv: cap.cpp:166 open can't open camera by index",
    )
    assert parse_line("[OPENCV:FFMPEG:16] method DESCRIBE failed: 401 (Unauthorized)") == (
        logging.ERROR,
        "ffmpeg: method DESCRIBE failed: 401 (Unauthorized)",
    )
    assert parse_line("[OPENCV:FFMPEG:48] CSeq: 3") == (logging.DEBUG, "ffmpeg: CSeq: 3")
    assert parse_line("[tcp @ 0x55b1b21c6e40] Port missing in uri") == (
        logging.WARNING,
        "ffmpeg tcp: Port missing in uri",
    )
    assert parse_line("CSeq: 3") == (None, "CSeq: 3")  # continues the line before it


def test_the_line_budget_drops_what_it_cannot_look_at(caplog: pytest.LogCaptureFixture) -> None:
    native = NativeOutput("door", lines_per_s=10)
    with caplog.at_level(logging.INFO, logger="capture_node.native"):
        native.take(b"".join(b"[tcp @ 0x1] distinct line %c\n" % (65 + i % 26) for i in range(1000)))
    logged = [r.getMessage() for r in caplog.records]
    assert len([m for m in logged if "distinct line" in m]) == 10
    assert "camera door: dropped 990 lines of native output (more than 10 per second)" in logged
    native.take(b"no end of line yet")
    native.take(b" " * 5000)  # an endless line is cut, not kept growing
    assert len(native._pending) <= 2000
