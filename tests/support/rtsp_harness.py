"""Start, kill, freeze and restart the real RTSP test server (tests/support/rtsp_server.py)."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.processes import NodeProcess

SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # GStreamer's Python bindings come from Debian packages


class RtspServer:
    def __init__(self, *args: str, port: int = 0) -> None:
        self.args = args
        self._start(port)

    def _start(self, port: int) -> None:
        self.proc = NodeProcess([SYSTEM_PYTHON, str(SERVER), "--port", str(port), *self.args])
        self.url = self.proc.wait_for(r"READY (rtsp://\S+)", timeout=20).group(1)
        self.port = int(self.url.split(":")[2].split("/")[0])

    def url_with(self, user: str = "", password: str = "", path: str | None = None) -> str:
        url = self.url if path is None else self.url.rsplit("/", 1)[0] + path
        return url.replace("rtsp://", f"rtsp://{user}:{password}@") if user else url

    def kill(self) -> None:
        self.proc.send(signal.SIGKILL)
        self.proc.wait_exit(5)

    def freeze(self) -> None:
        self.proc.send(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send(signal.SIGCONT)

    def restart(self) -> None:
        """A new server on the same port (the camera came back)."""
        if self.proc.proc.poll() is None:
            self.kill()
        self._start(self.port)

    def close(self) -> None:
        self.proc.send(signal.SIGCONT)
        self.proc.kill()
