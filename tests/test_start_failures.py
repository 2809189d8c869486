"""Every way a node can fail to start listening: a port taken, an address not on this host, a
low port without the right, a bad or live ipc path. Each runs the real command and checks the
one line the user sees (naming the endpoint and the fix), exit status 2, that it ended in time,
and that nothing it started is left running (the process's whole session is checked)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq

from framebus.worker_node.discovery import describe
from tests.support.processes import ROOT, Processes, session_members

IN_USE = "the port is in use (another node or program listens there): stop it, or choose another port"
DEADLINE_S = 30.0


@dataclass(frozen=True)
class Ended:
    code: int
    stderr: str
    seconds: float
    leftovers: list[str]

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if " ERROR " in line]


def run_to_end(argv: list[str]) -> Ended:
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _, stderr = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise AssertionError(f"{argv} still running after {DEADLINE_S} s") from None
    ended = Ended(proc.returncode, stderr, time.monotonic() - started, session_members(proc.pid))
    for line in ended.leftovers:  # never leak them into the next test
        os.kill(int(line.split(":")[0]), 9)
    return ended


def capture_node(*args: str) -> list[str]:
    return [sys.executable, "-m", "capture_node", *args]


def worker_node(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker_node", *args]


def assert_one_line(ended: Ended, *expected: str) -> None:
    assert "Traceback" not in ended.stderr, ended.stderr
    errors = ended.error_lines()
    assert len(errors) == 1, ended.stderr
    for text in expected:
        assert text in errors[0], ended.stderr
    assert ended.code == 2, ended.stderr
    assert ended.seconds < DEADLINE_S
    assert ended.leftovers == [], f"left running: {ended.leftovers}"


@contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def test_control_port_taken() -> None:
    with taken_port() as port:
        ended = run_to_end(capture_node("--control", f"tcp://127.0.0.1:{port}"))
    assert_one_line(ended, f"control endpoint: cannot listen on tcp://127.0.0.1:{port}: {IN_USE}")


def test_camera_frame_port_taken() -> None:
    """This one gave two chained tracebacks: the cleanup joined a thread that never started."""
    with taken_port() as port:
        ended = run_to_end(capture_node("--control", "tcp://127.0.0.1:*", "--bind", f"tcp://127.0.0.1:{port}"))
    assert_one_line(ended, f"camera cam1: cannot listen on tcp://127.0.0.1:{port}: {IN_USE}")


def test_every_frame_camera_port_taken() -> None:
    with taken_port() as port:
        ended = run_to_end(
            capture_node("--control", "tcp://127.0.0.1:*", "--bind", f"tcp://127.0.0.1:{port}", "--every-frame")
        )
    assert_one_line(ended, f"camera cam1: cannot listen on tcp://127.0.0.1:{port}: {IN_USE}")


def test_pull_port_taken_of_the_second_camera_stops_the_first(tmp_path: Path) -> None:
    """The first camera's process was running when the second failed: it must be gone too."""
    config = tmp_path / "node.toml"
    with taken_port() as port:
        config.write_text(
            '[node]\ncontrol = "tcp://127.0.0.1:*"\n'
            '[[camera]]\nid = "first"\nbind = "tcp://127.0.0.1:*"\n'
            f'[[camera]]\nid = "second"\nbind = "tcp://127.0.0.1:*"\npull_bind = "tcp://127.0.0.1:{port}"\n'
        )
        ended = run_to_end(capture_node("--config", str(config)))
    assert_one_line(ended, f"camera second: cannot listen on tcp://127.0.0.1:{port}: {IN_USE}")


def test_address_not_on_this_host() -> None:
    ended = run_to_end(capture_node("--control", "tcp://192.0.2.1:5555", "--insecure"))  # TEST-NET-1
    assert_one_line(
        ended, "cannot listen on tcp://192.0.2.1:5555: this host has no such address: use one of its own addresses"
    )


def test_low_port_without_the_right_to_bind_it() -> None:
    """A user namespace without a root mapping has no CAP_NET_BIND_SERVICE on this host's network."""
    ended = run_to_end(["unshare", "--user", *capture_node("--control", "tcp://127.0.0.1:80")])
    assert_one_line(
        ended, "cannot listen on tcp://127.0.0.1:80: permission denied: ports below 1024 need root; choose a port"
    )


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/nonexistent-dir/node", "its directory does not exist: create it, or choose another path"),
    ],
)
def test_bad_ipc_path(path: str, problem: str) -> None:
    ended = run_to_end(capture_node("--control", f"ipc://{path}"))
    assert_one_line(ended, f"control endpoint: cannot listen on ipc://{path}: {problem}")


def test_ipc_path_too_long_is_refused_with_the_arguments() -> None:
    """The endpoint parser knows a Unix socket's limit: refused before anything starts."""
    ended = run_to_end(capture_node("--control", "ipc:///tmp/" + "x" * 120))
    assert "Traceback" not in ended.stderr and ended.code == 2 and ended.leftovers == [], ended.stderr
    assert "capture-node: error: argument --control: " in ended.stderr
    assert "an ipc:// path is at most 107 bytes (a Unix socket's limit)" in ended.stderr


def test_ipc_path_of_a_running_node_is_refused_not_stolen(nodes: Processes, tmp_path: Path) -> None:
    """libzmq would delete the running node's socket file and take the path over, silently."""
    control = f"ipc://{tmp_path}/node"
    first, _ = nodes.capture("--control", control, "--camera-id", "first")
    ended = run_to_end(capture_node("--control", control, "--camera-id", "second"))
    assert_one_line(ended, f"control endpoint: cannot listen on {control}: another program (another node?)")
    with zmq.Context() as ctx:
        assert [c.camera for c in describe(ctx, control, 5.0).cameras] == ["first"]
    assert first.proc.poll() is None


def test_stale_ipc_file_is_replaced(nodes: Processes, tmp_path: Path) -> None:
    """A socket file whose node is gone (killed) must not stop the next start."""
    control = f"ipc://{tmp_path}/node"
    first, _ = nodes.capture("--control", control)
    first.kill()
    assert (tmp_path / "node").exists()
    second, _ = nodes.capture("--control", control)
    with zmq.Context() as ctx:
        assert describe(ctx, control, 5.0).cameras


def test_capture_metrics_port_taken_starts_no_camera() -> None:
    with taken_port() as port:
        ended = run_to_end(capture_node("--control", "tcp://127.0.0.1:*", "--metrics-port", str(port)))
    assert_one_line(ended, f"--metrics-port: cannot listen on 127.0.0.1:{port}: {IN_USE}")
    assert "camera cam1" not in ended.stderr


def test_process_worker_control_taken() -> None:
    with taken_port() as port:
        ended = run_to_end(
            worker_node(
                "process",
                "--node",
                "tcp://127.0.0.1:9",
                "--camera",
                "cam1",
                "--handler",
                "framebus.worker_node.handlers.motion:MotionDetector",
                "--control",
                f"tcp://127.0.0.1:{port}",
            )
        )
    assert_one_line(ended, f"--control: cannot listen on tcp://127.0.0.1:{port}: {IN_USE}")


def test_web_listen_taken() -> None:
    with taken_port() as port:
        ended = run_to_end(worker_node("web", "--node", "tcp://127.0.0.1:9", "--listen", f"127.0.0.1:{port}"))
    assert_one_line(ended, f"--listen: cannot listen on 127.0.0.1:{port}: {IN_USE}")


def test_save_listen_taken(tmp_path: Path) -> None:
    with taken_port() as port:
        ended = run_to_end(worker_node("save", "--listen", f"tcp://127.0.0.1:{port}", "--out", str(tmp_path)))
    assert_one_line(ended, f"--listen: cannot listen on tcp://127.0.0.1:{port}: {IN_USE}")


def test_worker_metrics_port_taken() -> None:
    with taken_port() as port:
        ended = run_to_end(worker_node("--metrics-port", str(port), "top", "--node", "tcp://127.0.0.1:9"))
    assert_one_line(ended, f"--metrics-port: cannot listen on 127.0.0.1:{port}: {IN_USE}")
