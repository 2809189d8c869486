"""No camera password or token reaches any output, end to end: real capture nodes with cameras
that fail (a closed port, a real RTSP server that refuses the password, a malformed URL), real
workers, and everything a person or a program can read from them: node stdout/stderr (FFmpeg's
and OpenCV's own lines included), `worker-node describe`, status lines and logs of a save
worker, the web viewer's /api/status, `top`, and the Prometheus metrics of both nodes. Also a
node from before redaction: the workers redact what it sends. And camera processes carry their
camera's name in `ps`."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import zmq

from framebus.common.protocol import DescribeRequest, Kind, ProtocolError, decode
from tests.support.processes import Processes, wait_until
from tests.support.rtsp_harness import RtspServer
from tests.support.wire import camera_entry, packed, raw, status_dict

# Every character that broke the old redaction: '/', '@', ':', a %-escape, '?', '#', ';&=',
# and non-ASCII. Its pieces between delimiters are distinct, so a partial leak shows too.
PASSWORD = "Qx7Kp/Zr8@Vm3:Jt%41?Lw#Hn;&=ünïq"
TOKEN = "tok-9Gf2Wb4Ys"
QUERY_PASSWORD = "qpw-3Rd8Nc"
RIGHT_PASSWORD = "the-right-one"


def secrets() -> list[str]:
    """Every form in which the password or a token could show."""
    forms = [PASSWORD, quote(PASSWORD, safe=""), unquote(PASSWORD), TOKEN, QUERY_PASSWORD]
    forms += [base64.b64encode(f"admin:{p}".encode()).decode() for p in (PASSWORD, unquote(PASSWORD))]
    pieces = [p for p in PASSWORD.replace("@", "/").replace(":", "/").replace("?", "/").replace("#", "/").split("/")]
    return forms + [p for p in pieces if len(p) >= 3]


def assert_no_secret(where: str, text: str) -> None:
    for secret in secrets():
        assert secret not in text, f"{secret!r} leaked into {where}:\n{text}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def open_errors(metrics_port: int, camera: str) -> float:
    for line in http_get(f"http://127.0.0.1:{metrics_port}/metrics").splitlines():
        if line.startswith(f'framebus_errors_total{{camera="{camera}",kind="open"}}'):
            return float(line.rpartition(" ")[2])
    return 0.0


def node_config(tmp_path: Path, cameras: dict[str, str]) -> Path:
    text = '[node]\ncontrol = "tcp://127.0.0.1:*"\n'
    for cam_id, source in cameras.items():
        assert '"' not in source and "\\" not in source
        text += f'[[camera]]\nid = "{cam_id}"\nsource = "{source}"\nreconnect_max = 0.5\nopen_timeout = 2.0\n'
        text += "width = 160\nheight = 120\nfps = 10\n" if source == "test" else ""
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def failing_cameras(server: RtspServer) -> dict[str, str]:
    closed = free_port()  # nothing listens there
    return {
        "ok": "test",
        # raw: FFmpeg and Python's URL parser both trip over the '/', '?' and '#'
        "door": f"rtsp://admin:{PASSWORD}@127.0.0.1:{closed}/stream?token={TOKEN}",
        # %-encoded, against a real server that wants another password: 401
        "gate": f"{server.url_with('admin', quote(PASSWORD, safe=''))}?token={TOKEN}",
        # a connection refused, with a password in the query as well
        "yard": f"http://admin:{quote(PASSWORD, safe='')}@127.0.0.1:{closed}/video.mjpg?pwd={QUERY_PASSWORD}",
    }


@pytest.fixture
def secured_server(rtsp: Callable[..., RtspServer]) -> RtspServer:
    return rtsp("--width", "160", "--height", "120", "--user", "admin", "--password", RIGHT_PASSWORD)


def test_no_secret_reaches_any_output(nodes: Processes, tmp_path: Path, secured_server: RtspServer) -> None:
    node_metrics, worker_metrics = free_port(), free_port()
    config = node_config(tmp_path, failing_cameras(secured_server))
    started = time.monotonic()
    node, control = nodes.capture("--config", str(config), "--metrics-port", str(node_metrics))
    node.wait_for("metrics on http://")
    for camera in ("door", "gate", "yard"):
        wait_until(lambda camera=camera: open_errors(node_metrics, camera) >= 3, 40, f"3 failed opens of {camera}")  # type: ignore[misc]
    node.wait_for(
        r"camera gate: cannot open rtsp://admin:\*\*\*@127\.0\.0\.1:\d+/stream\?token=\*\*\*: 401 Unauthorized"
    )
    node.wait_for(r"camera door: cannot open rtsp://admin:\*\*\*@127\.0\.0\.1:\d+/stream\?token=\*\*\*: malformed URL")
    node.wait_for(
        r"camera yard: cannot open http://admin:\*\*\*@127\.0\.0\.1:\d+/video\.mjpg\?pwd=\*\*\*: connection refused"
    )

    # FFmpeg's own complaints: named, redacted, once although every retry repeats them
    node.wait_for(r"WARNING capture_node.native: camera gate: ffmpeg rtsp: method DESCRIBE failed: 401")
    # (An HTTP camera that refuses is found out by capture_node/mjpeg.py before FFmpeg is asked.)
    repeats = len([line for line in node.lines if "camera gate: ffmpeg rtsp: method DESCRIBE failed" in line])
    assert 1 <= repeats <= 1 + int((time.monotonic() - started) / 30), "once per 30 s, not once per retry"
    assert not [line for line in node.lines if line.startswith(("[tcp @", "[rtsp @", "[http @", "[ WARN", "[ERROR"))]

    describe = nodes.worker("describe", "--node", control)
    assert describe.wait_exit(15) == 0
    assert "(cannot open rtsp://admin:***@127.0.0.1" in describe.output

    saver = nodes.worker(
        "--metrics-port", str(worker_metrics), "save", "--node", control, "--out", str(tmp_path / "out"),
        "--status-interval", "0.3",
    )  # fmt: skip
    saver.wait_for(r"^gate .*\(cannot open rtsp://admin:\*\*\*@127\.0\.0\.1:\d+/stream\?token=\*\*\*: 401 Unauthorized")
    saver.wait_for(r"^yard .*\(cannot open http://admin:\*\*\*@")

    viewer = nodes.worker("web", "--node", control, "--listen", "127.0.0.1:0")
    url = viewer.wait_for(r"web viewer on (http://\S+)").group(1)

    def reasons() -> dict[str, str]:
        return {c["camera"]: c["reason"] for c in json.loads(http_get(url + "api/status"))["cameras"]}

    wait_until(lambda: all(reasons().get(c) for c in ("door", "gate", "yard")), 20, "reasons on /api/status")
    status = http_get(url + "api/status")
    assert "401 Unauthorized" in reasons()["gate"]

    top = nodes.worker("top", "--node", control, "--count", "2", "--refresh", "0.3")
    assert top.wait_exit(20) == 0

    outputs = {
        "the capture node's stdout and stderr": node.output,
        "worker-node describe": describe.output,
        "the save worker's status lines and logs": saver.output,
        "the web viewer's /api/status": status,
        "the web viewer's logs": viewer.output,
        "worker-node top": top.output,
        "the capture node's metrics": http_get(f"http://127.0.0.1:{node_metrics}/metrics"),
        "the save worker's metrics": http_get(f"http://127.0.0.1:{worker_metrics}/metrics"),
    }
    node.stop()
    outputs["the capture node's last words"] = node.output
    for where, text in outputs.items():
        assert_no_secret(where, text)


def test_no_secret_in_ffmpeg_trace_output(
    nodes: Processes, tmp_path: Path, secured_server: RtspServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At FFmpeg's trace level (OPENCV_FFMPEG_LOGLEVEL=56, a user debugging a camera) FFmpeg
    prints every RTSP request it sends, `Authorization: Basic …` and the URL's query included."""
    monkeypatch.setenv("OPENCV_FFMPEG_DEBUG", "1")
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "56")
    port = free_port()
    config = node_config(tmp_path, {"gate": failing_cameras(secured_server)["gate"]})
    node, _ = nodes.capture("--config", str(config), "--metrics-port", str(port), "--log-level", "DEBUG")
    node.wait_for("metrics on http://")
    wait_until(lambda: open_errors(port, "gate") >= 3, 40, "3 failed opens")
    node.wait_for(r"DEBUG capture_node.native: camera gate: ffmpeg: ")
    node.stop()
    raw_lines = [line for line in node.lines if line.startswith("[OPENCV:FFMPEG")]
    assert not raw_lines, f"raw FFmpeg lines got through: {raw_lines[:5]}"
    assert_no_secret("the capture node's output at FFmpeg's trace level", node.output)


class OldNode:
    """A capture node from before redaction: its describe replies and status messages carry
    the camera's URL, password included, in the reason."""

    REASON = f"cannot open rtsp://admin:{PASSWORD}@cam.local/stream?token={TOKEN}: 401 Unauthorized"

    def __init__(self) -> None:
        self._ctx = zmq.Context()
        self._control = self._ctx.socket(zmq.ROUTER)
        self.control = f"tcp://127.0.0.1:{self._control.bind_to_random_port('tcp://127.0.0.1')}"
        self._stream = self._ctx.socket(zmq.PUB)
        self._endpoint = f"tcp://127.0.0.1:{self._stream.bind_to_random_port('tcp://127.0.0.1')}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """Answer describe; send a status twice a second (built by hand: today's encoder redacts)."""
        entry = camera_entry("old", self._endpoint, state="source-error", fps=0, width=0, height=0, reason=self.REASON)
        next_status = 0.0
        while not self._stop.is_set():
            if self._control.poll(50):
                identity, request = self._control.recv_multipart()
                try:
                    if isinstance(decode(request), DescribeRequest):
                        reply = {"node": "old-node", "time_ns": time.time_ns(), "cameras": [entry]}
                        self._control.send_multipart([identity, raw(Kind.DESCRIBE_REPLY, packed(reply))])
                except ProtocolError:
                    pass
            if time.monotonic() >= next_status:
                status = status_dict("old", state="source-error", reason=self.REASON, last_seq=-1)
                self._stream.send(raw(Kind.STATUS, packed(status)))
                next_status = time.monotonic() + 0.5

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._ctx.destroy(0)


@pytest.fixture
def old_node() -> Iterator[OldNode]:
    node = OldNode()
    try:
        yield node
    finally:
        node.close()


def test_workers_redact_what_an_old_node_sends(nodes: Processes, tmp_path: Path, old_node: OldNode) -> None:
    describe = nodes.worker("describe", "--node", old_node.control)
    assert describe.wait_exit(15) == 0
    assert "(cannot open rtsp://admin:***@cam.local/stream?token=***: 401 Unauthorized)" in describe.output

    saver = nodes.worker("save", "--node", old_node.control, "--out", str(tmp_path / "out"), "--status-interval", "0.3")
    saver.wait_for(r"^old .*\(cannot open rtsp://admin:\*\*\*@cam\.local/stream\?token=\*\*\*: 401 Unauthorized\)")

    viewer = nodes.worker("web", "--node", old_node.control, "--listen", "127.0.0.1:0")
    url = viewer.wait_for(r"web viewer on (http://\S+)").group(1)
    wait_until(lambda: "401 Unauthorized" in http_get(url + "api/status"), 20, "the old node's reason on /api/status")
    status = http_get(url + "api/status")
    assert "rtsp://admin:***@cam.local" in status

    top = nodes.worker("top", "--node", old_node.control, "--count", "2", "--refresh", "0.3")
    assert top.wait_exit(20) == 0
    for where, text in {
        "worker-node describe": describe.output,
        "the save worker's output": saver.output,
        "the web viewer's /api/status": status,
        "the web viewer's logs": viewer.output,
        "worker-node top": top.output,
    }.items():
        assert_no_secret(where, text)


def test_a_mistyped_command_line_does_not_echo_the_password(nodes: Processes) -> None:
    """`capture-node rtsp://…` (the --source forgotten): argparse echoes what it did not expect."""
    url = f"rtsp://admin:{PASSWORD}@cam.local/stream?token={TOKEN}"
    for command in (["capture_node", url], ["worker_node", "describe", "--node", "tcp://127.0.0.1:5555", url]):
        node = nodes.start(command[0], command[1:])
        assert node.wait_exit(15) == 2
        assert "error: unrecognized arguments: rtsp://admin:***@cam.local/stream?token=***" in node.output
        assert_no_secret(f"the error of {command[0]}", node.output)


def test_a_config_error_does_not_echo_the_password(nodes: Processes, tmp_path: Path) -> None:
    """A source written as a list: the error says what it refuses without walking into it."""
    config = tmp_path / "node.toml"
    config.write_text(
        f'[[camera]]\nid = "door"\nsource = ["rtsp://admin:{quote(PASSWORD)}@cam.local/x?token={TOKEN}"]\n'
    )
    node = nodes.start("capture_node", ["--config", str(config)])
    assert node.wait_exit(15) == 2
    assert "camera[0].source: must be str, got a list" in node.output
    assert_no_secret("a config error", node.output)


def test_uncaught_exceptions_are_logged_redacted(nodes: Processes) -> None:
    """Python prints an uncaught exception itself, unredacted; setup_logging routes it through
    the log format, for the main thread and any other."""
    script = f"""
import threading
from framebus.common.logs import setup_logging
setup_logging()
url = "rtsp://admin:{quote(PASSWORD)}@cam.local/x?token={TOKEN}"
def fail():
    raise RuntimeError("thread cannot open " + url)
thread = threading.Thread(target=fail, name="grab-door")
thread.start()
thread.join()
raise RuntimeError("main cannot open " + url)
"""
    child = nodes.start_argv([sys.executable, "-c", script])
    assert child.wait_exit(15) == 1
    assert "CRITICAL uncaught: thread grab-door died" in child.output
    assert "RuntimeError: thread cannot open rtsp://admin:***@cam.local/x?token=***" in child.output
    assert "CRITICAL uncaught: uncaught exception" in child.output
    assert "RuntimeError: main cannot open rtsp://admin:***@cam.local/x?token=***" in child.output
    assert_no_secret("an uncaught exception", child.output)


def children(pid: int) -> list[int]:
    """Descendants: camera processes are forked by the node's forkserver, a child of the node."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue  # it exited meanwhile
            parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        todo += kids
    return found


def test_camera_processes_are_named_after_their_camera(nodes: Processes, tmp_path: Path) -> None:
    config = node_config(tmp_path, {"door": "test", "yard/north": "test"})
    node, _ = nodes.capture("--config", str(config))
    node.wait_for("camera yard/north: streaming")
    node.wait_for("camera door: streaming")
    names = {}
    for pid in children(node.proc.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        names[cmdline.split(b"\0")[0].decode()] = pid
    assert {"framebus-camera door", "framebus-camera yard/north"} <= set(names), names
    ps = subprocess.run(
        ["ps", "-o", "args=", "-p", str(names["framebus-camera door"])], capture_output=True, text=True, check=True
    )
    assert ps.stdout.strip() == "framebus-camera door"
