"""`make demo`'s script, run for real: twice at once (the second finds the first one's ports
taken and picks free ones, and runs on its own nodes), with a port given that is taken (it
stops at once), and with a part that fails (the others are stopped)."""

from __future__ import annotations

import os
import re
import signal
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ROOT, NodeProcess, wait_until

DEMO = ROOT / "deploy" / "demo.sh"
BIN = Path(sys.executable).parent


class Demos:
    """Each demo in its own session, so that a failed test leaves none of its nodes behind."""

    def __init__(self) -> None:
        self.started: list[NodeProcess] = []

    def start(self, cwd: Path, **env: str) -> NodeProcess:
        os.environ.update(env)  # NodeProcess passes os.environ on; restored below
        try:
            demo = NodeProcess(["setsid", "bash", str(DEMO)], cwd=cwd)
        finally:
            for name in env:
                del os.environ[name]
        self.started.append(demo)
        return demo

    def cleanup(self) -> None:
        for demo in self.started:
            try:
                os.killpg(demo.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            demo.proc.wait()


@pytest.fixture
def demos(monkeypatch: pytest.MonkeyPatch) -> Iterator[Demos]:
    monkeypatch.setenv("BIN", str(BIN))
    for name in ("DEMO_CONTROL_PORT", "DEMO_PROCESS_PORT", "DEMO_WEB_PORT", "OUT"):
        monkeypatch.delenv(name, raising=False)
    running = Demos()
    try:
        yield running
    finally:
        running.cleanup()


def announced(demo: NodeProcess) -> tuple[str, str, Path]:
    """(capture node endpoint, web URL, output directory) as the demo printed them."""
    control = demo.wait_for(r"demo: capture node on (\S+),", timeout=60).group(1)
    url = demo.wait_for(r"demo: web viewer on (\S+) ").group(1)
    out = demo.wait_for(r"demo: saving one frame every 2 s to (\S+)/ ").group(1)
    return control, url, Path(out)


def snapshot_seq(url: str) -> int:
    with urllib.request.urlopen(f"{url}cameras/demo-cam.jpg", timeout=5) as response:
        return int(response.headers["X-Seq"])


def try_snapshot_seq(url: str) -> int | None:
    try:
        return snapshot_seq(url)
    except OSError:
        return None


def session_alive(demo: NodeProcess) -> bool:
    try:
        os.killpg(demo.proc.pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_a_second_demo_takes_free_ports_and_runs_on_its_own(demos: Demos, tmp_path: Path) -> None:
    first = demos.start(tmp_path)
    control1, url1, out1 = announced(first)
    wait_until(lambda: try_snapshot_seq(url1) is not None, 60, "the first demo's web viewer")

    second = demos.start(tmp_path)
    control2, url2, out2 = announced(second)
    assert control2 != control1 and url2 != url1 and out2 != out1
    assert re.search(r"demo: port \d+ is in use \(another demo\?\): using \d+ instead", second.output)
    wait_until(lambda: try_snapshot_seq(url2) is not None, 60, "the second demo's web viewer")
    wait_until(lambda: list((tmp_path / out2).glob("*.jpg")), 30, "a frame saved by the second demo")

    # With the first demo gone, the second one goes on: it never used the first one's nodes.
    first.stop(signal.SIGINT, timeout=10)
    wait_until(lambda: not session_alive(first), 10, "every part of the first demo to end")
    saved = len(list((tmp_path / out2).glob("*.jpg")))
    seq = snapshot_seq(url2)
    wait_until(lambda: snapshot_seq(url2) > seq + 10, 30, "the second demo's camera to go on")
    wait_until(lambda: len(list((tmp_path / out2).glob("*.jpg"))) > saved, 30, "the second demo to go on saving")
    assert second.stop(signal.SIGINT, timeout=10) < 10
    assert second.proc.returncode == 0
    wait_until(lambda: not session_alive(second), 10, "every part of the second demo to end")
    assert "Traceback" not in first.output + second.output


def test_a_port_given_that_is_taken_stops_the_demo_at_once(demos: Demos, tmp_path: Path) -> None:
    first = demos.start(tmp_path)
    _, url1, _ = announced(first)
    wait_until(lambda: try_snapshot_seq(url1) is not None, 60, "the first demo's web viewer")
    web_port = url1.rstrip("/").rpartition(":")[2]
    second = demos.start(tmp_path, DEMO_WEB_PORT=web_port)
    assert second.wait_exit(30) != 0
    assert second.lines[-1] == (
        f"demo: DEMO_WEB_PORT={web_port}: port {web_port} or one after it is in use; choose another, or unset DEMO_WEB_PORT"
    )
    assert not [line for line in second.lines if not line.startswith("demo: ")], "nothing was started"
    assert not session_alive(second)
    assert first.proc.poll() is None


def test_a_part_that_fails_stops_the_whole_demo(demos: Demos, tmp_path: Path) -> None:
    """A save worker that cannot write its directory exits; the demo must not run on without it."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    demo = demos.start(tmp_path, OUT=str(blocker / "frames"))
    assert demo.wait_exit(60) == 1
    demo.wait_for(r"demo: a part of the demo stopped on its own \(its error is above\): stopping the others")
    wait_until(lambda: not session_alive(demo), 10, "every part of the demo to end")
