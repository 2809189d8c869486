"""Start real capture and worker node processes and wait on what they print (never sleep)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class NodeProcess:
    """A node process whose stdout and stderr lines are collected as they come."""

    def __init__(self, argv: list[str], cwd: Path | None = None) -> None:
        self.argv = argv
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd or ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._collect, args=(stream,), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _collect(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        """The first line (from index `start`) matching pattern; fails after timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if m := regex.search(line):
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; output:\n{self.output}")
                self._cond.wait(min(remaining, 0.5))

    def send(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> float:
        """Signal and wait; returns seconds until exit. Kills (and fails) if it hangs."""
        start = time.monotonic()
        self.send(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"{self.argv} did not exit within {timeout} s of signal {sig}:\n{self.output}"
            ) from None
        for reader in self._readers:
            reader.join(2)
        return time.monotonic() - start

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.argv} still running after {timeout} s:\n{self.output}") from None
        for reader in self._readers:
            reader.join(2)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Processes:
    """Starts nodes for one test and makes sure none outlives it."""

    def __init__(self) -> None:
        self.started: list[NodeProcess] = []

    def capture(self, *args: str) -> tuple[NodeProcess, str]:
        """A capture node on free loopback ports; returns it and its describe endpoint."""
        extra = [] if "--control" in args else ["--control", "tcp://127.0.0.1:*"]
        node = self.start("capture_node", [*extra, *args])
        control = node.wait_for(r"control endpoint (\S+)").group(1)
        return node, control

    def worker(self, *args: str) -> NodeProcess:
        return self.start("worker_node", list(args))

    def start_argv(self, argv: list[str]) -> NodeProcess:
        """Any command line (e.g. one prefixed with `ip netns exec HOST`)."""
        node = NodeProcess(argv)
        self.started.append(node)
        return node

    def start(self, module: str, args: list[str]) -> NodeProcess:
        """`python -m module args`, or `python module args` for a path ending in .py."""
        target = [module] if module.endswith(".py") else ["-m", module]
        node = NodeProcess([sys.executable, *target, *args])
        self.started.append(node)
        return node

    def cleanup(self) -> None:
        for node in self.started:
            node.kill()


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll a condition that has no event to wait on (files appearing on disk), with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()  # type: ignore[operator]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        threading.Event().wait(interval)


def hold(seconds: float) -> None:
    """A deliberate duration (an outage, a measurement window), not synchronisation."""
    time.sleep(seconds)


def session_members(sid: int) -> list[str]:
    """Command lines of the processes still in session `sid` (a node's camera processes stay in it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # it ended while we looked
        # A zombie has ended (init reaps it); a process with no command line any more is in the
        # middle of ending (its memory is gone, its zombie not yet made).
        if int(fields[3]) == sid and fields[0] != "Z" and cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found
