"""A real X server for window tests: Xvfb on a free display number.

`-displayfd` makes Xvfb write the display number once it accepts connections, so readiness
is an event to wait on (with a deadline), not a socket to poll.
"""

from __future__ import annotations

import os
import random
import select
import subprocess
import time
from pathlib import Path
from types import TracebackType


class VirtualScreen:
    def __init__(self, width: int = 1280, height: int = 720, timeout: float = 20.0) -> None:
        self.width, self.height = width, height
        # A random high display number: other jobs on the machine use :0, :1, :99.
        for _ in range(20):
            number = random.randrange(200, 1000)
            if not Path(f"/tmp/.X{number}-lock").exists() and self._start(number, timeout):
                return
        raise RuntimeError("Xvfb did not start on any of 20 display numbers")

    def _start(self, number: int, timeout: float) -> bool:
        reader, writer = os.pipe()
        try:
            self.proc = subprocess.Popen(
                ["Xvfb", f":{number}", "-displayfd", str(writer), "-screen", "0", f"{self.width}x{self.height}x24",
                 "-nolisten", "tcp"],
                pass_fds=(writer,),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            os.close(writer)
        deadline = time.monotonic() + timeout
        received = b""
        try:
            # Xvfb writes the number, then a newline in a second write(): closing the pipe before
            # the newline arrives kills the server ("Cannot write display number"). EOF without
            # a number: the display was taken, Xvfb exited.
            while not received.endswith(b"\n") and (remaining := deadline - time.monotonic()) > 0:
                if not select.select([reader], [], [], remaining)[0]:
                    break
                chunk = os.read(reader, 64)
                if not chunk:
                    break
                received += chunk
        finally:
            os.close(reader)
        if received.strip() != str(number).encode():
            self.close()
            return False
        self.display = f":{number}"
        return True

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> VirtualScreen:
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self.close()
