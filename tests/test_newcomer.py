"""What a new user met in a first hour with the README and every command: each case runs the
real command as a user would, and checks the one line they see (what was wrong, what to do),
the exit status, that it ended within a deadline, that no traceback was printed, and that
nothing it started is left running (its whole process session is checked)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.media import write_numbered_video
from tests.support.processes import ROOT, NodeProcess, session_members, wait_until

DEADLINE_S = 30.0


class Session(NodeProcess):
    """A node in its own process session, so that everything it starts can be found after it."""

    def __init__(self, argv: list[str], cwd: Path | None = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, cwd=cwd or ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.lines = []
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._collect, args=(stream,), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def leftovers(self) -> list[str]:
        found = session_members(self.proc.pid)
        for line in found:  # never leak them into the next test
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        return found

    def assert_clean_end(self, code: int, expected_code: int = 0) -> None:
        assert "Traceback" not in self.output, self.output
        assert code == expected_code, self.output
        assert self.leftovers() == [], self.output


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    started: list[Session] = []
    yield started
    for session in started:
        if session.proc.poll() is None:
            os.killpg(session.proc.pid, signal.SIGKILL)
            session.proc.wait()


def capture_node(sessions: list[Session], *args: str) -> Session:
    session = Session([sys.executable, "-m", "capture_node", "--control", "tcp://127.0.0.1:*", *args])
    sessions.append(session)
    return session


def test_ctrl_c_with_every_frame_and_no_subscriber(sessions: list[Session], tmp_path: Path) -> None:
    """README: `capture-node --source clip.mp4 --every-frame --as-fast-as-possible`, then Ctrl-C.
    It printed `publish thread failed` and a ZMQError traceback: the publish thread waited for a
    subscriber for a whole second, and the socket was closed under it after 0.3 s."""
    clip = write_numbered_video(tmp_path / "clip.mp4", 30)
    node = capture_node(sessions, "--source", str(clip), "--every-frame", "--as-fast-as-possible")
    node.wait_for(r"camera cam1: streaming", timeout=DEADLINE_S)
    node.send(signal.SIGINT)
    node.assert_clean_end(node.wait_exit(DEADLINE_S))
    assert " ERROR " not in node.output, node.output


class OneAnswerServer:
    """A TCP server that answers every connection with the same bytes: a wrong server where the
    user thought an RTSP camera was (a web server, a proxy, a broken camera firmware)."""

    def __init__(self, answer: bytes) -> None:
        self._answer = answer
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                try:
                    conn.recv(4096)
                    conn.sendall(self._answer)
                except OSError:
                    pass

    def close(self) -> None:
        self._sock.close()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # It said "the RTSP server answered 0 an unexpected answer (is it an RTSP server?)".
        (
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            "not an RTSP server: it answered 'HTTP/1.1 400 Bad Request'; check the host, the port and the scheme",
        ),
        (b"", "not an RTSP server: it closed the connection without answering"),
        # It said "camera cam1: invalid literal for int() with base 10: 'abc'", without the URL.
        (b"RTSP/1.0 404 Not Found\r\nContent-Length: abc\r\n\r\n", "404 Not Found: no stream at path '/x'"),
    ],
    ids=["http-server", "silent-server", "bad-content-length"],
)
def test_rtsp_url_of_a_wrong_server(sessions: list[Session], answer: bytes, expected: str) -> None:
    server = OneAnswerServer(answer)
    try:
        url = f"rtsp://user:secret@127.0.0.1:{server.port}/x"
        node = capture_node(sessions, "--source", url)
        line = node.wait_for(r"camera cam1: cannot open .*retry 1", timeout=DEADLINE_S).group(0)
        node.send(signal.SIGINT)
        node.assert_clean_end(node.wait_exit(DEADLINE_S))
    finally:
        server.close()
    assert f"cannot open rtsp://user:***@127.0.0.1:{server.port}/x: {expected}" in line, node.output
    assert "secret" not in node.output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_to_end(sessions: list[Session], argv: list[str]) -> tuple[Session, int]:
    session = Session(argv)
    sessions.append(session)
    return session, session.wait_exit(DEADLINE_S)


def test_describe_nobody_names_the_port(sessions: list[Session]) -> None:
    """README: `worker-node describe --node tcp://edge1:5555` with no node there. The line read
    `node tcp://edge1:*** no describe reply`: redaction took `5555:` (a port followed by the
    sentence's colon) for a password. Every "endpoint: problem" line lost its port that way,
    including every start failure's `cannot listen on tcp://127.0.0.1:5556: …`."""
    port = free_port()
    worker, code = run_to_end(
        sessions, [sys.executable, "-m", "worker_node", "describe", "--node", f"tcp://127.0.0.1:{port}"]
    )
    worker.assert_clean_end(code, expected_code=1)
    assert f"node tcp://127.0.0.1:{port}: no describe reply within" in worker.output, worker.output


def capture_to_end(sessions: list[Session], *args: str) -> tuple[Session, int]:
    return run_to_end(sessions, [sys.executable, "-m", "capture_node", "--control", "tcp://127.0.0.1:*", *args])


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--quality", "0", "camera[0].quality: must be between 1 and 100, got 0"),
        ("--width", "8", "camera[0].width: must be 0 (the source's size) or between 16 and 16384, got 8"),
    ],
)
def test_small_values_are_checked_not_ignored(sessions: list[Session], flag: str, value: str, expected: str) -> None:
    """`--quality 0` used 80: 0 == False, so the flag was taken for not given. (`--width 0`
    now means what the config's 0 means, the source's size.)"""
    node, code = capture_to_end(sessions, flag, value)
    node.assert_clean_end(code, expected_code=2)
    assert f"ERROR capture_node: command line: {expected}" in node.output, node.output


def test_empty_allow_list_is_said_once(sessions: list[Session], tmp_path: Path) -> None:
    """An allow-list directory without keys admits nobody: the node said `allow-list …: 0 key(s)`
    at INFO, once per process (node and each camera), and nothing more."""
    subprocess.run(
        [sys.executable, "-m", "common.keys_cli", "generate", str(tmp_path), "--name", "edge"],
        check=True,
        capture_output=True,
    )
    (tmp_path / "allowed").mkdir()
    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\nkey = "edge.key_secret"\nallow = "allowed"\n'
        '[[camera]]\nid = "a"\nwidth = 160\nheight = 120\n[[camera]]\nid = "b"\nwidth = 160\nheight = 120\n'
    )
    node = capture_node(sessions, "--config", str(config))
    node.wait_for("camera a: streaming", timeout=DEADLINE_S)
    node.wait_for("camera b: streaming", timeout=DEADLINE_S)
    node.send(signal.SIGINT)
    node.assert_clean_end(node.wait_exit(DEADLINE_S))
    warnings = [line for line in node.lines if "allow-list" in line]
    assert warnings == [warnings[0]], node.output
    assert (
        f"WARNING framebus.security: allow-list {tmp_path / 'allowed'}: no keys, so no worker is admitted"
        in warnings[0]
    )


def test_control_port_at_the_top(sessions: list[Session]) -> None:
    """`--control tcp://127.0.0.1:65535`: the camera's default port would be 65536. The line was
    `bind: 'tcp://127.0.0.1:65536': the port 65536 is not from 1 to 65535`, naming a port the
    user never typed and not saying what to do."""
    node, code = run_to_end(sessions, [sys.executable, "-m", "capture_node", "--control", "tcp://127.0.0.1:65535"])
    node.assert_clean_end(code, expected_code=2)
    assert "command line: camera[0].bind: control port + 1 is past 65535; set bind explicitly" in node.output


HANDLERS = {
    "good.py": "def f(image, header):\n    return None\n",
    "typo.py": "def f(image, header)\n    return None\n",
    "boom.py": "raise RuntimeError('boom')\n",
    "one.py": "def f(image):\n    return None\n\nclass C:\n    def __call__(self, image):\n        return None\n",
}


def worker_script() -> list[str]:
    """The `worker-node` console script, as the README runs it: unlike `python -m`, it does not
    put the current directory on sys.path."""
    script = Path(sys.executable).parent / "worker-node"
    if not script.exists():
        pytest.fail(f"no worker-node script next to {sys.executable}: install the project (make test does)")
    return [str(script)]


def process_worker(sessions: list[Session], cwd: Path, handler: str) -> Session:
    argv = [*worker_script(), "process", "--node", f"tcp://127.0.0.1:{free_port()}", "--camera", "cam1"]
    session = Session([*argv, "--control", "tcp://127.0.0.1:*", "--handler", handler], cwd=cwd)
    sessions.append(session)
    return session


def test_handler_module_in_the_current_directory(sessions: list[Session], tmp_path: Path) -> None:
    """`worker-node process --handler good:f` next to good.py said `No module named 'good'`."""
    for name, text in HANDLERS.items():
        (tmp_path / name).write_text(text)
    worker = process_worker(sessions, tmp_path, "good:f")
    worker.wait_for("control endpoint", timeout=DEADLINE_S)
    worker.send(signal.SIGINT)
    worker.assert_clean_end(worker.wait_exit(DEADLINE_S))


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("typo:f", "handler 'typo:f': importing typo failed: SyntaxError: expected ':' ({dir}/typo.py, line 1)"),
        ("boom:f", "handler 'boom:f': importing boom failed: RuntimeError: boom ({dir}/boom.py, line 1)"),
        (
            "good.py:f",
            "handler 'good.py:f': give a module name, not a file: --handler good:f "
            "(run from its directory, or add that directory to PYTHONPATH)",
        ),
        # These two gave a TypeError traceback on every frame (every 5 s, rate-limited), forever.
        ("one:f", "handler 'one:f' must take two arguments, (image, header); it takes (image)"),
        ("one:C", "handler 'one:C': C.__call__ must take two arguments, (image, header); it takes (image)"),
    ],
    ids=["syntax-error", "raises-on-import", "file-name", "one-argument", "class-one-argument"],
)
def test_handler_that_does_not_load(sessions: list[Session], tmp_path: Path, handler: str, expected: str) -> None:
    """A handler module with a syntax error, or one that raises while it loads, gave a traceback
    from importlib (once the module could be found at all)."""
    for name, text in HANDLERS.items():
        (tmp_path / name).write_text(text)
    worker = process_worker(sessions, tmp_path, handler)
    worker.assert_clean_end(worker.wait_exit(DEADLINE_S), expected_code=2)
    errors = [line for line in worker.lines if " ERROR " in line]
    assert len(errors) == 1 and expected.format(dir=tmp_path) in errors[0], worker.output


def test_node_name_workers_would_refuse(sessions: list[Session], tmp_path: Path) -> None:
    """A [node] name of 300 characters: the node ran, and every worker refused its describe
    replies as malformed (the protocol allows 128); at 100,000 characters the node's control
    thread died on a ProtocolError traceback and the node went on running, answering nobody."""
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\nname = "{"n" * 300}"\n[[camera]]\nid = "a"\n')
    node, code = capture_to_end(sessions, "--config", str(config))
    node.assert_clean_end(code, expected_code=2)
    assert f"ERROR capture_node: {config}: node.name: must be 1 to 128 printable characters, got 'nnn" in node.output


GOOD_CONFIG = '[node]\n[[camera]]\nid = "a"\nwidth = 160\nheight = 120\n'


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        # A FIFO blocked the node at start, for good, silently.
        (lambda p: os.mkfifo(p), "not a regular file (a FIFO, socket or device cannot be a config file)"),
        (lambda p: p.mkdir(), "is a directory, not a config file"),
        (
            lambda p: p.write_bytes(b"\x00\x00\x00\x18ftypmp42\xff\xd8"),
            "not a text file (a config file is TOML, in UTF-8)",
        ),  # was "cannot read: 'utf-8' codec can't decode byte 0xff in position 10: invalid start byte"
        (lambda p: p.write_bytes(b"#" * (2 << 20)), "larger than 1024 KiB: not a node's config file"),
    ],
    ids=["fifo", "directory", "binary", "huge"],
)
def test_config_that_is_not_a_config_file(
    sessions: list[Session], tmp_path: Path, make: Callable[[Path], object], expected: str
) -> None:
    config = tmp_path / "node.toml"
    make(config)
    node, code = capture_to_end(sessions, "--config", str(config))
    node.assert_clean_end(code, expected_code=2)
    assert f"ERROR capture_node: {config}: {expected}" in node.output, node.output


def test_config_saved_with_a_byte_order_mark(sessions: list[Session], tmp_path: Path) -> None:
    """Windows editors write one: it was `not valid TOML: Invalid statement (at line 1, column 1)`."""
    config = tmp_path / "node.toml"
    config.write_bytes(b"\xef\xbb\xbf" + GOOD_CONFIG.encode())
    node = capture_node(sessions, "--config", str(config))
    node.wait_for("camera a: streaming", timeout=DEADLINE_S)
    node.send(signal.SIGINT)
    node.assert_clean_end(node.wait_exit(DEADLINE_S))


def test_sighup_while_the_config_is_a_fifo(sessions: list[Session], tmp_path: Path) -> None:
    """The reload blocked on the FIFO: the node stopped reloading and answered no more signals
    until something wrote to it. Now the reload is refused in one line and the node goes on."""
    config = tmp_path / "node.toml"
    config.write_text(GOOD_CONFIG)
    node = capture_node(sessions, "--config", str(config))
    node.wait_for("camera a: streaming", timeout=DEADLINE_S)
    config.unlink()
    os.mkfifo(config)
    node.send(signal.SIGHUP)
    node.wait_for(f"ERROR capture_node: reload: {config}: not a regular file", timeout=DEADLINE_S)
    config.unlink()
    config.write_text(GOOD_CONFIG.replace('id = "a"', 'id = "b"'))
    node.send(signal.SIGHUP)
    node.wait_for("camera b: streaming", timeout=DEADLINE_S)
    node.send(signal.SIGINT)
    node.assert_clean_end(node.wait_exit(DEADLINE_S))


@pytest.mark.parametrize("command", [["generate", "{file}", "--name", "x"], ["allow", "{file}", "{key}"]])
def test_keys_directory_that_is_a_file(sessions: list[Session], tmp_path: Path, command: list[str]) -> None:
    """`framebus-keys generate node.toml --name x` (the directory argument forgotten or swapped)
    said `node.toml: File exists`."""
    subprocess.run(
        [sys.executable, "-m", "common.keys_cli", "generate", str(tmp_path), "--name", "w"],
        check=True,
        capture_output=True,
    )
    file = tmp_path / "node.toml"
    file.write_text(GOOD_CONFIG)
    argv = [part.format(file=file, key=tmp_path / "w.key") for part in command]
    keys, code = run_to_end(sessions, [sys.executable, "-m", "common.keys_cli", *argv])
    keys.assert_clean_end(code, expected_code=2)
    assert keys.lines == [f"framebus-keys: {file}: a file is in the way: give a directory"], keys.output
    assert file.read_text() == GOOD_CONFIG


def http_get(port: int, target: str) -> bytes:
    """The raw answer; b"" while nothing listens yet."""
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    except ConnectionRefusedError:
        return b""
    with conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_web_client_cannot_fill_the_log_with_tracebacks(sessions: list[Session]) -> None:
    """A URL over 8 KiB (a browser's bookmarklet, a scanner) made aiohttp log an ERROR with a
    20-line traceback in the viewer's log, for every such request."""
    port = free_port()
    web = Session(
        [sys.executable, "-m", "worker_node", "web", "--node", f"tcp://127.0.0.1:{free_port()}",
         "--listen", f"127.0.0.1:{port}"]
    )  # fmt: skip
    sessions.append(web)
    web.wait_for("web viewer on", timeout=DEADLINE_S)
    for _ in range(3):
        assert b" 400 Bad Request" in http_get(port, "/api/status?x=" + "a" * 10000)[:40]
    assert http_get(port, "/api/status").startswith(b"HTTP/1.1 200")
    web.send(signal.SIGINT)
    web.assert_clean_end(web.wait_exit(DEADLINE_S))
    refused = [line for line in web.lines if "malformed HTTP request" in line]
    assert (
        len(refused) == 1
        and " WARNING worker_node.web: refused a malformed HTTP request from 127.0.0.1 (400)" in (refused[0])
    ), web.output
    assert " ERROR " not in web.output, web.output


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("DIR", "cannot open {source}: it is a directory, not a video file"),
        (
            "N",
            "cannot open {source}: no video device {source} (/dev/video{source} does not exist; `ls /dev/video*` lists them)",
        ),
    ],
    ids=["directory", "missing-device"],
)
def test_camera_source_that_cannot_be(sessions: list[Session], tmp_path: Path, source: str, expected: str) -> None:
    """A directory was "not a video file OpenCV/FFmpeg can read"; a device index that does not
    exist came with 8 lines of OpenCV's own output, one of them an ERROR, before the node's line."""
    if source == "DIR":
        source = str(tmp_path)
    else:  # a device number this machine does not have
        source = str(next(n for n in range(57, 1000) if not Path(f"/dev/video{n}").exists()))
    node = capture_node(sessions, "--source", source)
    line = node.wait_for(r"camera cam1: cannot open .*; retry 1", timeout=DEADLINE_S).group(0)
    node.send(signal.SIGINT)
    node.assert_clean_end(node.wait_exit(DEADLINE_S))
    assert expected.format(source=source) in line, node.output
    assert "capture_node.native" not in node.output, node.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # It ran for ever, saving nothing and saying nothing: no node can describe such an id.
        (
            ["--camera", "front door"],
            "argument --camera: camera id 'front door' is invalid: use 1-64 of [A-Za-z0-9_.-]",
        ),
        # Redaction took `*':` for a password and printed `'tcp://127.0.0.1:*** give a fixed port`.
        (
            ["--listen", "tcp://127.0.0.1:*"],
            "argument --listen: 'tcp://127.0.0.1:*': give a fixed port (e.g. tcp://0.0.0.0:6000)",
        ),
    ],
    ids=["camera-id", "listen-any-port"],
)
def test_save_option_mistakes(sessions: list[Session], tmp_path: Path, args: list[str], expected: str) -> None:
    argv = [sys.executable, "-m", "worker_node", "save", "--node", f"tcp://127.0.0.1:{free_port()}"]
    worker, code = run_to_end(sessions, [*argv, "--out", str(tmp_path), *args])
    worker.assert_clean_end(code, expected_code=2)
    assert f"worker-node save: error: {expected}" in worker.output, worker.output


def test_worker_global_options_after_the_command(sessions: list[Session], tmp_path: Path) -> None:
    """`worker-node save … --metrics-port 9101` (the README puts it before `save`; users put it
    anywhere) said `worker-node: error: unrecognized arguments: --metrics-port 9101`."""
    port = free_port()
    argv = [sys.executable, "-m", "worker_node", "save", "--node", f"tcp://127.0.0.1:{free_port()}"]
    worker = Session([*argv, "--out", str(tmp_path), "--metrics-port", str(port), "--log-level", "WARNING"])
    sessions.append(worker)
    wait_until(lambda: b"framebus_" in http_get(port, "/metrics"), DEADLINE_S, "the metrics endpoint")
    worker.send(signal.SIGINT)
    worker.assert_clean_end(worker.wait_exit(DEADLINE_S))
    assert " INFO " not in worker.output, worker.output  # --log-level WARNING was taken too


def test_remote_capture_given_the_node_endpoint_without_camera(sessions: list[Session]) -> None:
    """`RemoteCapture("tcp://edge1:5555")`, camera= forgotten: isOpened() was True and read()
    returned (False, None) for ever, with `error` empty and nothing logged."""
    node = capture_node(sessions, "--width", "160", "--height", "120")
    control = node.wait_for(r"control endpoint (\S+)", timeout=DEADLINE_S).group(1)
    script = (
        "import sys\nfrom framebus.common.logs import setup_logging\nfrom framebus.worker_node import RemoteCapture\n"
        "setup_logging()\n"
        f"cap = RemoteCapture({control!r}, timeout=1.0)\n"
        "ok, _ = cap.read()\nprint('read', ok, cap.error)\ncap.release()\n"
    )
    user, code = run_to_end(sessions, [sys.executable, "-c", script])
    user.assert_clean_end(code)
    said = f"no frame from {control} within 1.0 s: if it is a capture node's describe endpoint, give camera=ID"
    assert f"WARNING worker_node.remote_capture: RemoteCapture: {said}" in user.output, user.output
    assert f"read False {said}" in user.output, user.output
    node.send(signal.SIGINT)
    node.assert_clean_end(node.wait_exit(DEADLINE_S))


def test_process_suffix_mistake(sessions: list[Session], tmp_path: Path) -> None:
    """`--suffix ''` said only `camera id 'cam1/' is invalid`: an id the user never typed."""
    argv = [sys.executable, "-m", "worker_node", "process", "--node", f"tcp://127.0.0.1:{free_port()}"]
    argv += ["--camera", "cam1", "--handler", "tests.support.handlers_for_tests:slow", "--suffix", ""]
    worker, code = run_to_end(sessions, argv)
    worker.assert_clean_end(code, expected_code=2)
    assert "ERROR worker_node: suffix '': the output stream id is wrong: camera id 'cam1/' is invalid" in (
        worker.output
    ), worker.output


def test_save_a_camera_the_node_does_not_have(sessions: list[Session], tmp_path: Path) -> None:
    """`worker-node save --camera door` against a node whose camera is `cam1`: it waited in
    silence, which looked like a hang. Now it says once what the node has, and keeps waiting."""
    node = capture_node(sessions, "--width", "160", "--height", "120")
    control = node.wait_for(r"control endpoint (\S+)").group(1)
    save = Session([*worker_script(), "save", "--node", control, "--camera", "door", "--out", str(tmp_path)])
    sessions.append(save)
    line = save.wait_for(r"WARNING .*camera door: .*", timeout=DEADLINE_S).group(0)
    assert f"camera door: no node describes it: {control} has cam1; waiting for it to appear" in line
    save.send(signal.SIGINT)
    save.assert_clean_end(save.wait_exit(DEADLINE_S))
    assert save.output.count("no node describes it") == 1
