"""A camera process's native output, turned into log lines.

FFmpeg and OpenCV write from C straight to fd 2 (and, with OPENCV_FFMPEG_DEBUG, OpenCV's FFmpeg
log callback printf()s to fd 1): raw lines (`[tcp @ 0x…] Connection … refused`, `[ WARN:0@…]
global cap.cpp…`) that name no camera, repeat on every reconnect attempt and can carry a URL or
an `Authorization: Basic …` header. `NativeOutput.start()` points fds 1 and 2 at a pipe; a
thread reads it and turns each line into a log record that names the camera, redacted, at most
once per interval per distinct message. Python's own output (logs, tracebacks, warnings, prints)
goes to copies of the original fds, redacted line by line.

The reader never waits on anything but the pipe: past a budget of lines per second, whole
chunks are dropped unread (and counted), so native code never blocks on a full pipe. A
failure in the reader is logged and reading goes on; if reading itself fails, fds 1 and 2 are
pointed at /dev/null so that native writes still never block.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import sys
import threading
import time

from framebus.common.ratelimit import RateLimitedLog
from framebus.common.redact import redact

log = logging.getLogger("capture_node.native")

REPEAT_INTERVAL_S = 30.0  # each distinct message at most once per interval
LINES_PER_S = 50  # lines looked at per second; past that, output is dropped unread
MAX_LINE = 2000  # longer lines are cut
PIPE_BYTES = 1 << 20  # a bigger pipe absorbs a burst while the reader is descheduled

_OPENCV = re.compile(r"\[\s*(?P<level>[A-Z]+):\d+@[\d.]+\]\s*(?:global\s+)?(?P<message>.*)")
_OPENCV_FFMPEG = re.compile(r"\[OPENCV:FFMPEG:(?P<level>\d+)\]\s*(?P<message>.*)")
_FFMPEG = re.compile(r"\[(?P<component>[\w\-]+) @ 0x[0-9a-fA-F]+\]\s*(?P<message>.*)")
_VARYING = re.compile(r"0x[0-9a-fA-F]+|\d+")  # addresses, times, ports: the same message otherwise
# OpenCV's lines that only say "this backend did not open it" (and its exception dumps, whose
# untagged continuation lines follow the level of this one): the camera's own `cannot open …:
# <cause>` line says it better, so at INFO they were 1 to 8 lines of noise per failed open.
_NOISE = re.compile(
    r"can't be used to capture by name|can't open camera by index|raised OpenCV exception"
    r"|getStreamChannelGroup Camera index out of range"
)
_OPENCV_LEVELS = {"FATAL": logging.ERROR, "ERROR": logging.ERROR, "WARN": logging.WARNING, "INFO": logging.INFO}


def parse_line(line: str) -> tuple[int | None, str]:
    """A native line as (logging level, readable message without the tags). The level is None
    for a line without a tag: it continues the previous line's message (FFmpeg's multi-line
    dumps of requests and responses)."""
    if m := _OPENCV.fullmatch(line):
        return _OPENCV_LEVELS.get(m["level"], logging.DEBUG), f"opencv: {m['message']}"
    if m := _OPENCV_FFMPEG.fullmatch(line):  # OPENCV_FFMPEG_DEBUG=1; av_log levels: 16 error, 24 warning
        av_level = int(m["level"])
        level = logging.ERROR if av_level <= 16 else logging.WARNING if av_level <= 24 else logging.DEBUG
        return level, f"ffmpeg: {m['message']}"
    if m := _FFMPEG.fullmatch(line):
        return logging.WARNING, f"ffmpeg {m['component']}: {m['message']}"
    return None, line


class NativeOutput:
    """fds 1 and 2 of this process, read into logging on behalf of camera `camera_id`."""

    def __init__(
        self, camera_id: str, repeat_interval: float = REPEAT_INTERVAL_S, lines_per_s: float = LINES_PER_S
    ) -> None:
        self.camera_id = camera_id
        self._repeats = RateLimitedLog(log, repeat_interval)
        self._repeat_interval = repeat_interval
        self._rate = lines_per_s
        self._budget = lines_per_s
        self._budget_at = time.monotonic()
        self._pending = b""
        self._level = logging.WARNING  # of the last tagged line: untagged lines continue it
        self.dropped = 0  # lines dropped unread since the last report
        self._dropped_reported_at = 0.0
        self._read_fd = -1
        self._stopping = False
        self._thread = threading.Thread(target=self._read_loop, name=f"stderr-{camera_id}", daemon=True)

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        try:
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size: the default 64 KiB still works
        for fd, stream in ((1, "stdout"), (2, "stderr")):
            getattr(sys, stream).flush()
            real = os.dup(fd)
            os.dup2(write_fd, fd)
            setattr(sys, stream, RedactingWriter(real))
        os.close(write_fd)
        self._read_fd = read_fd
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Drain what was written so far and stop reading. fds 1 and 2 then lead to /dev/null:
        a capture abandoned in native code may still write, and must neither block nor leak."""
        self._stopping = True
        _discard_native_output()  # the pipe's last writer is gone: the reader reads to its end, then sees EOF
        self._thread.join(timeout)

    def _read_loop(self) -> None:
        why = "an unexpected error"  # and the thread's own report follows (threading.excepthook)
        try:
            while chunk := os.read(self._read_fd, 65536):
                try:
                    self.take(chunk)
                except Exception:  # a bug in turning lines into logs must not stop the reading
                    self._pending = b""
                    self._report_failure()
            why = "end of input"
        except OSError as exc:
            why = str(exc)
        finally:
            self._report_dropped(force=True)
            if not self._stopping:  # native writes must never block on a pipe nobody reads
                _discard_native_output()
                log.error(
                    "camera %s: reading native output failed (%s); it is discarded from now on", self.camera_id, why
                )

    def take(self, chunk: bytes) -> None:
        """Log the complete lines of `chunk` (with what came before it), within the budget."""
        data = self._pending + chunk
        cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
        complete, self._pending = (b"", data) if cut < 0 else (data[:cut], data[cut + 1 :])
        if len(self._pending) > MAX_LINE:  # a line without end: log its start, drop the rest
            complete, self._pending = complete + b"\n" + self._pending[:MAX_LINE], b""
        lines = complete.splitlines()
        self._refill()
        allowed = min(len(lines), int(self._budget))
        self._budget -= allowed
        for raw in lines[:allowed]:
            try:
                self._log_line(raw[:MAX_LINE].decode("utf-8", "replace").strip())
            except Exception:  # one line that cannot be logged costs that line only
                self._report_failure()
        self.dropped += len(lines) - allowed
        self._report_dropped()

    def _refill(self) -> None:
        now = time.monotonic()
        self._budget = min(self._rate, self._budget + (now - self._budget_at) * self._rate)
        self._budget_at = now

    def _report_failure(self) -> None:
        self._repeats.log(logging.ERROR, "reader-failed", "camera %s: cannot log native output", self.camera_id)
        log.debug("native output reader failure", exc_info=True)

    def _log_line(self, line: str) -> None:
        if not line:
            return
        level, message = parse_line(line)
        if level is not None and _NOISE.search(message):
            level = logging.DEBUG
        self._level = level = self._level if level is None else level
        key = _VARYING.sub("#", message)[:200]
        self._repeats.log(level, key, "camera %s: %s", self.camera_id, redact(message))

    def _report_dropped(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.dropped and (force or now - self._dropped_reported_at >= self._repeat_interval):
            log.warning(
                "camera %s: dropped %d lines of native output (more than %.0f per second)",
                self.camera_id,
                self.dropped,
                self._rate,
            )
            self.dropped = 0
            self._dropped_reported_at = now


class RedactingWriter(io.TextIOBase):
    """sys.stdout or sys.stderr for Python's own output in a process whose fds 1 and 2 are
    captured: whole lines, redacted, to the original fd."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        with self._lock:
            self._partial += text
            end = self._partial.rfind("\n") + 1
            if end:
                self._emit(self._partial[:end])
                self._partial = self._partial[end:]
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._partial:
                self._emit(self._partial)
                self._partial = ""

    def _emit(self, text: str) -> None:
        data = redact(text).encode("utf-8", "replace")
        while data:
            try:
                data = data[os.write(self._fd, data) :]
            except OSError:
                return  # the output is gone (closed terminal): nothing to tell, nowhere to tell it


def _discard_native_output() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
