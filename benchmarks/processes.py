"""Helper processes of a benchmark: started, waited on by what they print, stopped by signal.

Every helper (benchmarks/agent.py) prints one JSON object per line on stdout ({"ready": true},
{"endpoint": ...}); a thread per helper reads them so that the orchestrator blocks on a
condition with a deadline, never on a fixed sleep.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class HelperError(RuntimeError):
    """A helper died or did not say what was expected in time."""


class Helper:
    """A subprocess whose stdout lines are JSON events (stderr goes to a log file)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(log_dir / f"{name}.log", "w")  # closed in stop()
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.events: dict[str, Any] = {}
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._cond:
                self.events.update(event)
                self._cond.notify_all()
        with self._cond:
            self.events["_eof"] = True
            self._cond.notify_all()

    def wait_for(self, key: str, timeout: float = 30.0) -> Any:
        """The value of the first event carrying key; HelperError if the helper exits first."""
        with self._cond:
            ok = self._cond.wait_for(lambda: key in self.events or "_eof" in self.events, timeout)
            if key in self.events:
                return self.events[key]
        state = "exited" if ok else f"said nothing for {timeout:.0f} s"
        raise HelperError(f"{self.name} {state} before {key!r} (see its log)")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not end in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._thread.join(2.0)
        self._log.close()
        return code


class CaptureNodeProcess:
    """The real `capture-node` CLI on the clip; waits for its 'streaming' log line."""

    def __init__(self, clip: Path, log_dir: Path, name: str = "capture-node") -> None:
        script = Path(sys.executable).parent / "capture-node"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "capture_node"]
        command += ["--source", str(clip), "--loop", "--camera-id", "cam1", "--quality", "80"]
        command += ["--control", "tcp://127.0.0.1:*"]
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(log_dir / f"{name}.log", "w")  # closed in stop()
        self.proc = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
        self.control = ""
        self._streaming = threading.Event()
        self._thread = threading.Thread(target=self._read, name="read-capture-node", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._log.write(line)
            if m := re.search(r"control endpoint (\S+)", line):
                self.control = m.group(1)
            if "streaming" in line and self.control:
                self._streaming.set()
        self._streaming.set()

    def wait_streaming(self, timeout: float = 30.0) -> str:
        """The control endpoint once the camera streams."""
        if not self._streaming.wait(timeout) or self.proc.poll() is not None or not self.control:
            raise HelperError("capture-node did not start streaming (see its log)")
        return self.control

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._thread.join(2.0)
        self._log.close()
        return code


def agent(*args: str) -> list[str]:
    """The command line of a benchmark helper."""
    return [sys.executable, "-m", "benchmarks.agent", *args]
