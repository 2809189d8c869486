"""The mistakes matrix: what a user gets for each wrong command, option, file or endpoint.

Every case runs the real command and asserts the one line the user sees (what was wrong and
what to do), the exit status, that it ended within a deadline, that no traceback and no secret
was printed, and that nothing it started is left running. Cases where the right answer is to
keep running (an endpoint that does not answer yet) assert the line, then stop the command.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.processes import ROOT, NodeProcess, session_members

BIN = Path(sys.executable).parent
SECRET = "s3cr/t:p@ss"  # a password with the characters that used to escape redaction
DEADLINE_S = 20.0  # a mistake at start must be reported well within this (loaded 2-core machine)


@dataclass
class Outcome:
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float
    leftovers: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def line(self) -> str:
        """The line that tells the user what went wrong: argparse's `error:` line or the
        last ERROR log line."""
        for text in reversed(self.stderr.splitlines() + self.stdout.splitlines()):
            if " ERROR " in text or text.startswith(("error:", "Error:")) or ": error: " in text:
                return text
        raise AssertionError(f"{self.argv}: no error line in:\n{self.output}")


def run(argv: list[str], timeout: float = DEADLINE_S, cwd: Path | None = None, stdin: int | None = None) -> Outcome:
    """Run a command in its own session; fail if it outlives `timeout`."""
    start = time.monotonic()
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120")
    env.pop("DISPLAY", None)
    proc = subprocess.Popen(
        argv,
        cwd=cwd or ROOT,
        env=env,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"{argv} still running after {timeout} s:\n{stdout}{stderr}") from None
    seconds = time.monotonic() - start
    leftovers = session_members(proc.pid)
    if leftovers:
        os.killpg(proc.pid, signal.SIGKILL)
    return Outcome(argv, proc.returncode, stdout, stderr, seconds, leftovers)


def capture_node(*args: str) -> list[str]:
    return [sys.executable, "-m", "capture_node", *args]


def worker_node(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker_node", *args]


def keys(*args: str) -> list[str]:
    return [str(BIN / "framebus-keys"), *args]


def check(outcome: Outcome, code: int, *fragments: str) -> str:
    """The common assertions; returns the user's line for case-specific ones."""
    assert "Traceback" not in outcome.output, f"{outcome.argv} printed a traceback:\n{outcome.output}"
    assert SECRET not in outcome.output and "p@ss" not in outcome.output, f"{outcome.argv} printed a secret"
    assert not outcome.leftovers, f"{outcome.argv} left processes running: {outcome.leftovers}"
    assert outcome.code == code, f"{outcome.argv}: exit {outcome.code}, expected {code}:\n{outcome.output}"
    line = outcome.line()
    for fragment in fragments:
        assert fragment.lower() in line.lower(), f"{outcome.argv}: {fragment!r} not in the line {line!r}"
    return line


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A TCP port on loopback that something else already listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- endpoints


ENDPOINT_TYPOS = [
    ("127.0.0.1:5555", "tcp://127.0.0.1:5555"),  # no scheme
    ("localhost:5555", "tcp://localhost:5555"),
    ("tcp://127.0.0.1", "port"),  # no port
    ("tcp://127.0.0.1:99999", "port"),  # port out of range
    ("tcp:/127.0.0.1:5555", "tcp://"),  # one slash
    (f"rtsp://admin:{SECRET}@10.0.0.7/stream1", "capture-node"),  # a camera URL where a node is meant
    ("http://127.0.0.1:8080/", "tcp://"),
]


@pytest.mark.parametrize("endpoint,hint", ENDPOINT_TYPOS)
@pytest.mark.parametrize("command", ["save", "describe", "top", "web"])
def test_worker_node_endpoint_typos(tmp_path: Path, command: str, endpoint: str, hint: str) -> None:
    extra = ["--out", str(tmp_path)] if command == "save" else []
    line = check(run(worker_node(command, "--node", endpoint, *extra)), 2, "--node", hint)
    assert len(line) < 400


@pytest.mark.parametrize("endpoint,hint", ENDPOINT_TYPOS[:5])
def test_capture_node_control_typos(endpoint: str, hint: str) -> None:
    check(run(capture_node("--control", endpoint)), 2, "control", hint)


def test_capture_node_bind_typo() -> None:
    check(run(capture_node("--control", "tcp://127.0.0.1:*", "--bind", "127.0.0.1:6000")), 2, "tcp://127.0.0.1:6000")


def test_remote_capture_typos_never_raise() -> None:
    script = (
        "from framebus.worker_node import RemoteCapture\n"
        f"for e in ['127.0.0.1:5555', 'rtsp://admin:{SECRET}@10.0.0.7/x', 'tcp://127.0.0.1']:\n"
        "    cap = RemoteCapture(e, camera='cam1', timeout=0.5)\n"
        "    print('opened' if cap.isOpened() else 'not opened', '|', cap.error)\n"
    )
    outcome = run([sys.executable, "-c", script])
    assert outcome.code == 0, outcome.output
    assert "Traceback" not in outcome.output and "p@ss" not in outcome.output, outcome.output
    lines = [line for line in outcome.stdout.splitlines() if line.startswith(("opened", "not opened"))]
    assert len(lines) == 3 and all(line.startswith("not opened") for line in lines), outcome.stdout
    assert "tcp://127.0.0.1:5555" in lines[0]


# ----------------------------------------------------------------------------- exposure


def test_capture_node_exposed_without_keys() -> None:
    check(run(capture_node("--control", "tcp://0.0.0.0:*")), 2, "--insecure")


def test_worker_listen_exposed_without_keys(tmp_path: Path) -> None:
    check(run(worker_node("save", "--listen", "tcp://0.0.0.0:6000", "--out", str(tmp_path))), 2, "--insecure")


def test_process_control_exposed_without_keys() -> None:
    argv = worker_node(
        "process", "--node", "tcp://127.0.0.1:5555", "--camera", "cam1",
        "--handler", "framebus.worker_node.handlers.motion:MotionDetector", "--control", "tcp://0.0.0.0:*",
    )  # fmt: skip
    check(run(argv), 2, "--insecure")


# ----------------------------------------------------------------------------- ports taken


def test_capture_node_control_port_taken(taken_port: int) -> None:
    check(run(capture_node("--control", f"tcp://127.0.0.1:{taken_port}")), 2, f"127.0.0.1:{taken_port}")


def test_capture_node_frame_port_taken(taken_port: int) -> None:
    argv = capture_node("--control", "tcp://127.0.0.1:*", "--bind", f"tcp://127.0.0.1:{taken_port}")
    check(run(argv), 2, f"127.0.0.1:{taken_port}")


def test_capture_node_config_camera_port_taken(tmp_path: Path, taken_port: int) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\ncontrol = "tcp://127.0.0.1:*"\n'
        '[[camera]]\nid = "a"\nsource = "test"\nbind = "tcp://127.0.0.1:*"\n'
        f'[[camera]]\nid = "b"\nsource = "test"\nbind = "tcp://127.0.0.1:{taken_port}"\n'
    )
    check(run(capture_node("--config", str(config))), 2, f"127.0.0.1:{taken_port}")


def test_capture_node_address_not_on_this_host() -> None:
    check(run(capture_node("--control", "tcp://192.0.2.1:5555", "--insecure")), 2, "192.0.2.1")


def test_web_listen_port_taken(taken_port: int, closed_port: int) -> None:
    argv = worker_node("web", "--node", f"tcp://127.0.0.1:{closed_port}", "--listen", f"127.0.0.1:{taken_port}")
    check(run(argv), 2, str(taken_port))


def test_process_control_port_taken(taken_port: int, closed_port: int) -> None:
    argv = worker_node(
        "process", "--node", f"tcp://127.0.0.1:{closed_port}", "--camera", "cam1",
        "--handler", "framebus.worker_node.handlers.motion:MotionDetector", "--control", f"tcp://127.0.0.1:{taken_port}",
    )  # fmt: skip
    check(run(argv), 2, str(taken_port))


@pytest.mark.parametrize("flag_position", ["capture", "worker"])
def test_metrics_port_taken(tmp_path: Path, taken_port: int, closed_port: int, flag_position: str) -> None:
    if flag_position == "capture":
        argv = capture_node("--control", "tcp://127.0.0.1:*", "--metrics-port", str(taken_port))
    else:
        argv = worker_node(
            "--metrics-port",
            str(taken_port),
            "save",
            "--node",
            f"tcp://127.0.0.1:{closed_port}",
            "--out",
            str(tmp_path),
        )
    check(run(argv), 2, str(taken_port))


@pytest.mark.parametrize("value", ["99999", "-1", "abc"])
def test_metrics_port_invalid(value: str) -> None:
    check(run(capture_node("--metrics-port", value)), 2, "--metrics-port")


# ----------------------------------------------------------------------------- config files


CONFIG_MISTAKES = [
    ("[node\n", "node.toml"),  # TOML syntax
    ('[node]\ncolour = "red"\n[[camera]]\nid = "a"\n', "colour"),  # unknown field
    ('[[camera]]\nid = "a"\nquality = 400\n', "quality"),
    ('[[camera]]\nid = "a b"\n', "id"),
    ('[[camera]]\nid = "a"\n[[camera]]\nid = "a"\n', "a"),  # duplicate id
    ('[[camera]]\nid = "a"\nfps = "fast"\n', "fps"),
    ('[[camera]]\nid = "a"\nbind = "127.0.0.1:6000"\n', "tcp://127.0.0.1:6000"),
    ('[node]\ncontrol = "tcp://0.0.0.0:5555"\n[[camera]]\nid = "a"\n', "insecure"),
    ('[node]\nkey = "missing.key_secret"\nallow = "allowed"\n[[camera]]\nid = "a"\n', "missing.key_secret"),
    ("", "camera"),  # no cameras
]


@pytest.mark.parametrize("text,fragment", CONFIG_MISTAKES)
def test_capture_node_config_mistakes(tmp_path: Path, text: str, fragment: str) -> None:
    config = tmp_path / "node.toml"
    config.write_text(text)
    line = check(run(capture_node("--config", str(config))), 2, fragment)
    assert "node.toml" in line


def test_capture_node_config_missing(tmp_path: Path) -> None:
    check(run(capture_node("--config", str(tmp_path / "nope.toml"))), 2, "nope.toml")


def test_capture_node_config_is_a_directory(tmp_path: Path) -> None:
    check(run(capture_node("--config", str(tmp_path))), 2, str(tmp_path))


def test_capture_node_config_with_camera_flags(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[[camera]]\nid = "a"\n')
    check(run(capture_node("--config", str(config), "--fps", "5")), 2, "--fps")


# ----------------------------------------------------------------------------- option values


CAPTURE_OPTION_MISTAKES = [
    (["--fps", "-1"], "fps"),
    (["--fps", "abc"], "--fps"),
    (["--quality", "0"], "quality"),
    (["--quality", "abc"], "--quality"),
    (["--camera-id", "bad id"], "camera"),
    (["--camera-id", "../etc"], "camera"),
    (["--width", "10"], "width"),
    (["--log-level", "LOUD"], "--log-level"),
    (["--source"], "--source"),
    (["--frobnicate"], "--frobnicate"),
]


@pytest.mark.parametrize("args,fragment", CAPTURE_OPTION_MISTAKES)
def test_capture_node_option_mistakes(args: list[str], fragment: str) -> None:
    check(run(capture_node("--control", "tcp://127.0.0.1:*", *args)), 2, fragment)


SAVE_OPTION_MISTAKES = [
    (["--every", "0s"], "--every"),
    (["--every", "soon"], "--every"),
    (["--every-n", "0"], "--every-n"),
    (["--every-n", "3", "--every", "1s"], "--every"),
    (["--keep-bytes", "5X"], "--keep-bytes"),
    (["--keep-files", "-3"], "--keep-files"),
    (["--duration", "forever"], "--duration"),
    (["--status-interval", "0"], "--status-interval"),
    (["--max-message-size", "lots"], "--max-message-size"),
]


@pytest.mark.parametrize("args,fragment", SAVE_OPTION_MISTAKES)
def test_save_option_mistakes(tmp_path: Path, closed_port: int, args: list[str], fragment: str) -> None:
    argv = worker_node("save", "--node", f"tcp://127.0.0.1:{closed_port}", "--out", str(tmp_path), *args)
    check(run(argv), 2, fragment)


def test_worker_node_without_command() -> None:
    check(run(worker_node()), 2, "command")


def test_save_without_source(tmp_path: Path) -> None:
    check(run(worker_node("save", "--out", str(tmp_path))), 2, "--node")


def test_process_without_camera() -> None:
    argv = worker_node(
        "process", "--node", "tcp://127.0.0.1:5555", "--handler", "framebus.worker_node.handlers.motion:MotionDetector"
    )
    check(run(argv), 2, "--camera")


@pytest.mark.parametrize(
    "handler,fragment",
    [
        ("no_such_module:f", "no_such_module"),
        ("framebus.worker_node.handlers.motion:NoSuchThing", "NoSuchThing"),
        ("worker_node.handlers.motion", "module:function"),
        ("framebus.worker_node.handlers.motion:BOX_COLOUR", "BOX_COLOUR"),
    ],
)
def test_process_handler_mistakes(closed_port: int, handler: str, fragment: str) -> None:
    argv = worker_node(
        "process", "--node", f"tcp://127.0.0.1:{closed_port}", "--camera", "cam1", "--handler", handler,
        "--control", "tcp://127.0.0.1:*",
    )  # fmt: skip
    check(run(argv), 2, fragment)


def test_display_without_a_display(closed_port: int) -> None:
    check(run(worker_node("display", "--node", f"tcp://127.0.0.1:{closed_port}")), 2, "display")


@pytest.mark.parametrize("value", ["host", "127.0.0.1:http", "[::1", "127.0.0.1:70000"])
def test_web_listen_mistakes(closed_port: int, value: str) -> None:
    check(run(worker_node("web", "--node", f"tcp://127.0.0.1:{closed_port}", "--listen", value)), 2, "--listen")


# ----------------------------------------------------------------------------- output directory


def test_save_out_unwritable(tmp_path: Path, closed_port: int) -> None:
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o500)
    argv = worker_node("save", "--node", f"tcp://127.0.0.1:{closed_port}", "--out", str(out))
    # root writes anywhere: run as nobody, as a service account would. Reading may pass every
    # permission (CAP_DAC_READ_SEARCH; writing may not): pyenv's Pythons, which make test-all
    # uses, live under /root, which nobody cannot enter.
    reader = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    outcome = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *reader, *argv])
    check(outcome, 2, str(out))


def test_save_out_is_a_file(tmp_path: Path, closed_port: int) -> None:
    out = tmp_path / "file"
    out.write_text("")
    check(run(worker_node("save", "--node", f"tcp://127.0.0.1:{closed_port}", "--out", str(out))), 2, str(out))


def test_save_out_on_read_only_fs(closed_port: int) -> None:
    check(run(worker_node("save", "--node", f"tcp://127.0.0.1:{closed_port}", "--out", "/proc/framebus")), 2, "/proc")


# ----------------------------------------------------------------------------- keys


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("what", ["missing", "fifo", "public", "garbage", "directory"])
def test_capture_node_key_mistakes(tmp_path: Path, what: str) -> None:
    subprocess.run(keys("generate", str(tmp_path), "--name", "node"), check=True, capture_output=True)
    allow = tmp_path / "allowed"
    allow.mkdir()
    key = {
        "missing": tmp_path / "nope.key_secret",
        "fifo": _fifo(tmp_path / "fifo.key_secret"),
        "public": tmp_path / "node.key",
        "garbage": tmp_path / "garbage.key_secret",
        "directory": allow,
    }[what]
    if what == "garbage":
        key.write_text("not a key\n")
    check(run(capture_node("--key", str(key), "--allow", str(allow)), timeout=10), 2, key.name)


def test_capture_node_key_without_allow(tmp_path: Path) -> None:
    subprocess.run(keys("generate", str(tmp_path), "--name", "node"), check=True, capture_output=True)
    check(run(capture_node("--key", str(tmp_path / "node.key_secret"))), 2, "allow")


@pytest.mark.parametrize("what", ["missing", "fifo", "secret-for-server"])
def test_worker_key_mistakes(tmp_path: Path, closed_port: int, what: str) -> None:
    subprocess.run(keys("generate", str(tmp_path), "--name", "w"), check=True, capture_output=True)
    secret, public = tmp_path / "w.key_secret", tmp_path / "w.key"
    if what == "missing":
        args = ["--key", str(tmp_path / "nope.key_secret"), "--server-key", str(public)]
        fragment = "nope.key_secret"
    elif what == "fifo":
        args = ["--key", str(secret), "--server-key", str(_fifo(tmp_path / "server.key"))]
        fragment = "server.key"
    else:
        args = ["--key", str(public), "--server-key", str(public)]
        fragment = "w.key"
    argv = worker_node("describe", "--node", f"tcp://127.0.0.1:{closed_port}", *args)
    check(run(argv, timeout=10), 2, fragment)


def test_worker_warns_about_a_readable_secret_key(tmp_path: Path, closed_port: int) -> None:
    subprocess.run(keys("generate", str(tmp_path), "--name", "w"), check=True, capture_output=True)
    secret = tmp_path / "w.key_secret"
    secret.chmod(secret.stat().st_mode | stat.S_IROTH)
    argv = worker_node(
        "describe", "--node", f"tcp://127.0.0.1:{closed_port}", "--timeout", "0.5",
        "--key", str(secret), "--server-key", str(tmp_path / "w.key"),
    )  # fmt: skip
    outcome = run(argv)
    assert "Traceback" not in outcome.output
    assert any("WARNING" in line and "w.key_secret" in line for line in outcome.stderr.splitlines()), outcome.output


KEYS_MISTAKES = [
    (["show", "/nonexistent/x.key"], "x.key"),
    (["allow", "{dir}/allowed", "{dir}/nope.key"], "nope.key"),
    (["revoke", "{dir}/allowed", "nobody"], "nobody"),
    (["generate", "{dir}", "--name", "bad name"], "name"),
    (["generate", "{dir}", "--name", "k"], "exists"),  # k was made by the fixture
    (["list", "{dir}/nope"], "nope"),
]


@pytest.mark.parametrize("args,fragment", KEYS_MISTAKES)
def test_framebus_keys_mistakes(tmp_path: Path, args: list[str], fragment: str) -> None:
    subprocess.run(keys("generate", str(tmp_path), "--name", "k"), check=True, capture_output=True)
    (tmp_path / "allowed").mkdir()
    outcome = run(keys(*[a.format(dir=tmp_path) for a in args]))
    assert "Traceback" not in outcome.output, outcome.output
    assert outcome.code != 0, outcome.output
    assert fragment.lower() in outcome.output.lower(), outcome.output


# ----------------------------------------------------------------------------- nodes that don't answer


@pytest.mark.parametrize("command", ["save", "top", "web"])
def test_worker_says_which_node_does_not_answer(tmp_path: Path, closed_port: int, command: str) -> None:
    """Within a few seconds, not silence forever; and the worker keeps trying."""
    endpoint = f"tcp://127.0.0.1:{closed_port}"
    extra = {"save": ["--out", str(tmp_path)], "top": [], "web": ["--listen", "127.0.0.1:0"]}[command]
    worker = NodeProcess(worker_node(command, "--node", endpoint, *extra))
    try:
        line = worker.wait_for(rf"{endpoint}.*(not answer|no answer|not reachable)", timeout=10).string
        for cause in ("listens", "port", "firewall"):  # refused: what it means, and what to check
            assert cause in line.lower(), line
        assert worker.proc.poll() is None, "the worker gave up instead of retrying"
        assert worker.stop(timeout=5) < 5
    finally:
        worker.kill()
    assert "Traceback" not in worker.output


def test_worker_says_a_port_is_not_a_node(tmp_path: Path, taken_port: int) -> None:
    """Something listens there, but it is not a capture node (say, a web server)."""
    endpoint = f"tcp://127.0.0.1:{taken_port}"
    worker = NodeProcess(worker_node("save", "--node", endpoint, "--out", str(tmp_path)))
    try:
        worker.wait_for(rf"{endpoint}.*(not answer|no answer|not reachable)", timeout=10)
    finally:
        worker.kill()


def test_describe_a_node_that_does_not_answer(closed_port: int) -> None:
    endpoint = f"tcp://127.0.0.1:{closed_port}"
    check(run(worker_node("describe", "--node", endpoint, "--timeout", "1s")), 1, endpoint, "running")


def test_every_subcommand_has_help() -> None:
    for command in ("save", "display", "web", "process", "top", "describe"):
        outcome = run(worker_node(command, "-h"))
        assert outcome.code == 0, outcome.output
        usage, _, rest = outcome.stdout.partition("\n\n")
        assert rest.strip() and not rest.lstrip().startswith("options:"), f"{command} -h has no description"
