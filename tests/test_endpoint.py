"""common.endpoint: what it accepts, what it refuses and the fix it suggests; strict loopback;
the exposure rule; and every command line entry point refusing a typo with one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from framebus.common.endpoint import (
    Endpoint,
    EndpointError,
    ListenAddress,
    is_loopback,
    parse_endpoint,
    parse_host,
    parse_listen,
    same_host,
)
from framebus.common.metrics import parse_metrics_address
from framebus.common.security import ExposureError, check_exposure, http_exposure_warning
from tests.support.processes import ROOT

PASSWORD = "S3cret-pw"


@pytest.mark.parametrize(
    ("text", "bind", "expected"),
    [
        ("tcp://127.0.0.1:5555", False, Endpoint("tcp", "127.0.0.1", 5555)),
        ("tcp://edge1:5555", False, Endpoint("tcp", "edge1", 5555)),
        ("tcp://edge1.site.example:1", False, Endpoint("tcp", "edge1.site.example", 1)),
        ("tcp://[::1]:65535", False, Endpoint("tcp", "::1", 65535)),
        ("tcp://[fe80::1%eth0]:5555", False, Endpoint("tcp", "fe80::1%eth0", 5555)),
        ("tcp://0.0.0.0:5556", False, Endpoint("tcp", "0.0.0.0", 5556)),
        ("tcp://*:5555", True, Endpoint("tcp", "*", 5555)),
        ("tcp://127.0.0.1:*", True, Endpoint("tcp", "127.0.0.1", None)),
        ("tcp://eth0:5555", True, Endpoint("tcp", "eth0", 5555)),
        ("ipc:///tmp/framebus-node", False, Endpoint("ipc", path="/tmp/framebus-node")),
        ("ipc://@abstract", False, Endpoint("ipc", path="@abstract")),
        ("ipc://*", True, Endpoint("ipc", path="*")),
    ],
)
def test_accepted_endpoints_parse_and_print_back(text: str, bind: bool, expected: Endpoint) -> None:
    parsed = parse_endpoint(text, bind=bind)
    assert parsed == expected
    assert str(parsed) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:5555", "'127.0.0.1:5555' has no scheme: did you mean tcp://127.0.0.1:5555?"),
        ("edge1:5555", "'edge1:5555' has no scheme: did you mean tcp://edge1:5555?"),
        ("[::1]:5555", "'[::1]:5555' has no scheme: did you mean tcp://[::1]:5555?"),
        ("5555", "'5555' has no host and no scheme: did you mean tcp://127.0.0.1:5555?"),
        ("/tmp/node", "'/tmp/node' has no scheme: did you mean ipc:///tmp/node?"),
        ("tcp:/edge1:5555", "'tcp:/edge1:5555' needs '//' after 'tcp:': did you mean tcp://edge1:5555?"),
        ("ipc:/tmp/n", "'ipc:/tmp/n' needs '//' after 'ipc:': did you mean ipc:///tmp/n?"),
        ("TCP://edge1:5555", "'TCP://edge1:5555': schemes are lower case: did you mean tcp://edge1:5555?"),
        (" tcp://edge1:5555", "' tcp://edge1:5555' has spaces around it: did you mean tcp://edge1:5555?"),
        ("tcp://edge1", "'tcp://edge1' has no port: give one, e.g. tcp://edge1:5555"),
        ("tcp://[::1]", "'tcp://[::1]' has no port: give one after the address, e.g. tcp://[::1]:5555"),
        ("tcp://::1:5555", "'tcp://::1:5555': put an IPv6 address in brackets: did you mean tcp://[::1]:5555?"),
        ("tcp://edge1:5555/", "'tcp://edge1:5555/' has a path after the port: did you mean tcp://edge1:5555?"),
        ("tcp://edge1:0", "'tcp://edge1:0': the port 0 is not from 1 to 65535"),
        ("tcp://edge1:65536", "'tcp://edge1:65536': the port 65536 is not from 1 to 65535"),
        ("tcp://edge1:http", "'tcp://edge1:http': the port 'http' is not a number from 1 to 65535"),
        ("tcp://edge1:-1", "'tcp://edge1:-1': the port '-1' is not a number from 1 to 65535"),
        ("tcp://:5555", "'tcp://:5555' has no host: e.g. tcp://127.0.0.1:5555 (this host only), "),
        ("tcp://*:5555", "'tcp://*:5555': '*' (every interface) is for binding; to connect, name the host"),
        ("tcp://edge1:*", "'tcp://edge1:*': port '*' (any free port) is for binding; to connect, give the port"),
        ("tcp://127.1:5555", "'tcp://127.1:5555': '127.1' is not an IPv4 address"),
        ("tcp://2130706433:5555", "'tcp://2130706433:5555': '2130706433' is not an IPv4 address"),
        ("tcp://0x7f.1:5555", "'tcp://0x7f.1:5555': '0x7f.1' is not an IPv4 address"),
        ("tcp://256.0.0.1:5555", "'tcp://256.0.0.1:5555': '256.0.0.1' is not an IPv4 address"),
        ("tcp://ed ge:5555", "'tcp://ed ge:5555': the host 'ed ge' has the character(s) ' '"),
        ("tcp://edge..x:5555", "'tcp://edge..x:5555': the host 'edge..x' has an empty or malformed part"),
        ("tcp://[edge1]:5555", "'tcp://[edge1]:5555': 'edge1' in brackets is not an IPv6 address"),
        ("tcp://[::1:5555", "an IPv6 address opened with '[' must be closed with ']'"),
        (
            "tcp://10.0.0.1:0;127.0.0.1:5555",
            "'tcp://10.0.0.1:0;127.0.0.1:5555' names a source address ('10.0.0.1:0', ZeroMQ's SRC;DST form): "
            "framebus does not accept it, give only tcp://HOST:PORT: did you mean tcp://127.0.0.1:5555?",
        ),
        ("tcp://eth0;127.0.0.1:5555", "names a source address ('eth0'"),
        ("ipc://", "'ipc://' has no path: e.g. ipc:///tmp/framebus-node"),
        ("ipc://" + "x" * 108, "an ipc:// path is at most 107 bytes"),
        ("ipc:///tmp/a\nb", "the path contains control characters"),
        ("inproc://x", "'inproc://x': inproc:// (a socket inside one process) is not accepted here"),
        ("pgm://eth0;239.0.0.1:5555", "ZeroMQ's pgm:// transport is not used by framebus"),
        ("gopher://x:1", "has an unknown scheme 'gopher'"),
        ("", "an empty endpoint: give tcp://HOST:PORT or ipc://PATH"),
        ("edge1", "'edge1' is not an endpoint: give tcp://HOST:PORT or ipc://PATH"),
    ],
)
def test_refused_endpoints_say_what_and_suggest_the_fix(text: str, message: str) -> None:
    with pytest.raises(EndpointError) as info:
        parse_endpoint(text, "--node")
    assert str(info.value).startswith("--node: ") and message in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"rtsp://admin:{PASSWORD}@10.0.0.7:554/stream1",
        f"http://admin:{PASSWORD}@cam.local/video.mjpg",
        "rtsps://cam/stream",
        "file:///videos/a.mp4",
        f"tcp://admin:{PASSWORD}@edge1:5555",
    ],
)
def test_camera_urls_and_credentials_are_refused_without_printing_the_password(url: str) -> None:
    with pytest.raises(EndpointError) as info:
        parse_endpoint(url, "--node")
    message = str(info.value)
    assert PASSWORD not in message
    if "://" in url and not url.startswith("tcp"):
        assert "is a camera URL: that goes to capture-node --source" in message
        assert "a worker's --node is a capture node's describe endpoint, e.g. tcp://edge1:5555" in message
    else:
        assert "carries a user name or password" in message


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.255.255.254:5555", True),
        ("tcp://[::1]:5555", True),
        ("tcp://[::ffff:127.0.0.1]:5555", True),
        ("tcp://localhost:5555", True),
        ("tcp://LOCALHOST:5555", True),
        ("ipc:///tmp/n", True),
        ("inproc://n", True),
        ("tcp://127.evil.example:5555", False),
        ("tcp://127.0.0.1.nip.io:5555", False),
        ("tcp://localhost.evil.example:5555", False),
        ("tcp://10.0.0.1:0;127.0.0.1:5555", False),
        ("tcp://127.0.0.1:0;10.0.0.1:5555", False),
        ("tcp://127.0.0.1;10.0.0.1:5555", False),
        ("tcp://127.1:5555", False),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://*:5555", False),
        ("tcp://[::]:5555", False),
        ("tcp://128.0.0.1:5555", False),
        ("tcp://lo:5555", False),  # an interface name: ZeroMQ binds it, but it is not an address
        ("127.0.0.1:5555", False),
    ],
)
def test_loopback_is_strict(endpoint: str, loopback: bool) -> None:
    assert is_loopback(endpoint) is loopback


def test_same_host_compares_addresses_as_addresses_and_never_resolves_names() -> None:
    assert same_host("::1", "0:0::1")
    assert same_host("Edge1", "edge1")
    assert not same_host("localhost", "127.0.0.1")
    assert not same_host("127.0.0.1", "127.0.0.2")
    assert parse_host("[::1]") == "::1" and parse_host("edge1") == "edge1"
    with pytest.raises(EndpointError, match="is not an IPv4 address"):
        parse_host("127.1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ListenAddress("127.0.0.1", 8080)),
        ("0.0.0.0:80", ListenAddress("0.0.0.0", 80)),
        ("[::1]:8080", ListenAddress("::1", 8080)),
        ("localhost:0", ListenAddress("localhost", 0)),
        ("8080", ListenAddress("127.0.0.1", 8080)),
    ],
)
def test_listen_addresses(text: str, expected: ListenAddress) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://0.0.0.0:8080/", "'http://0.0.0.0:8080/': give HOST:PORT without a scheme: did you mean 0.0.0.0:8080?"),
        ("tcp://127.0.0.1:8080", "did you mean 127.0.0.1:8080?"),
        (":8080", "':8080' has no host: e.g. 127.0.0.1:8080 (this host only) or 0.0.0.0:8080 (every interface)"),
        ("*:8080", "'*:8080' has no host"),
        ("edge1", "'edge1' has no port"),
        ("::1:8080", "put an IPv6 address in brackets, e.g. [::1]:8080"),
        ("127.0.0.1:70000", "the port '70000' is not a number from 0 to 65535"),
        ("127.0.0.1;10.0.0.1:80", "is not HOST:PORT"),
    ],
)
def test_listen_address_mistakes(text: str, message: str) -> None:
    with pytest.raises(EndpointError) as info:
        parse_listen(text, "--listen")
    assert str(info.value).startswith("--listen: ") and message in str(info.value), str(info.value)


def test_metrics_address_is_loopback_unless_a_host_is_given() -> None:
    assert parse_metrics_address("9100") == ListenAddress("127.0.0.1", 9100)
    assert parse_metrics_address("0.0.0.0:9100") == ListenAddress("0.0.0.0", 9100)
    assert parse_metrics_address("0") is None
    for bad in ("127.0.0.1:0", "nine", "-1", "http://x:9100"):
        with pytest.raises(EndpointError):
            parse_metrics_address(bad)


def test_one_exposure_rule() -> None:
    def check(text: str, secured: bool = False, insecure: bool = False) -> bool:
        return check_exposure(
            "--listen", parse_endpoint(text, bind=True), secured=secured, insecure=insecure, fix="Fix"
        )

    assert check("tcp://127.0.0.1:6000") is False
    assert check("ipc:///tmp/x") is False
    assert check("tcp://0.0.0.0:6000", secured=True) is False
    assert check("tcp://0.0.0.0:6000", insecure=True) is True
    with pytest.raises(ExposureError) as info:
        check("tcp://127.evil.example:6000")
    assert str(info.value).startswith("--listen: tcp://127.evil.example:6000 can be reached from other hosts")
    assert "Fix, or pass --insecure" in str(info.value)
    assert http_exposure_warning("the web viewer", ListenAddress("127.0.0.1", 80), "sees the cameras") is None
    assert http_exposure_warning("the web viewer", ListenAddress("0.0.0.0", 80), "sees the cameras") == (
        "the web viewer 0.0.0.0:80 has no login: anyone who can reach it sees the cameras (see docs/security.md)"
    )


# ----------------------------------------------------------------------------- properties

_HOSTS = st.sampled_from(
    ["127.0.0.1", "edge1", "[::1]", "*", "0.0.0.0", "", "127.1", "a;b", "[::1", "x.", "eth0", "h_st", "[fe80::1%eth0]"]
)
_PORTS = st.sampled_from(["5555", "*", "0", "65535", "65536", "", "-1", "5555/", "٥٥٥٥", "05555"]) | st.text(max_size=6)
_SCHEMES = st.sampled_from(["tcp://", "ipc://", "inproc://", "TCP://", "tcp:/", "rtsp://", "", "udp://", "tcp://u:p@"])


@st.composite
def endpoint_like(draw: st.DrawFn) -> str:
    """Text near the shape of an endpoint: valid pieces, wrong pieces, ZeroMQ's own forms."""
    scheme = draw(_SCHEMES)
    if draw(st.integers(0, 4)) == 0:
        return scheme + draw(st.text(max_size=40))
    text = f"{scheme}{draw(_HOSTS | st.text(max_size=10))}:{draw(_PORTS)}"
    if draw(st.booleans()):
        text += draw(st.sampled_from([";127.0.0.1:5555", "/", " ", "\x00", "@x", "%25"]))
    return text


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=60) | endpoint_like(), st.booleans())
def test_parse_raises_nothing_but_endpoint_error_and_round_trips(text: str, bind: bool) -> None:
    try:
        parsed = parse_endpoint(text, "x", bind=bind)
    except EndpointError as exc:
        assert str(exc).startswith("x: ") and "\n" not in str(exc)
        return
    assert parse_endpoint(str(parsed), bind=bind) == parsed
    assert parsed.scheme == "ipc" or not any(c in str(parsed) for c in ";@ \t\n")
    assert parsed.scheme in ("tcp", "ipc")


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=30) | endpoint_like())
def test_listen_parse_raises_nothing_but_endpoint_error(text: str) -> None:
    try:
        parsed = parse_listen(text)
    except EndpointError as exc:
        assert "\n" not in str(exc)
        return
    assert 0 <= parsed.port <= 65535 and parse_listen(str(parsed)) == parsed


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(endpoint_like())
def test_zeromq_connects_to_whatever_the_parser_accepts(text: str) -> None:
    """An accepted endpoint never becomes a ZMQError later (names are not resolved here)."""
    try:
        parsed = parse_endpoint(text)
    except EndpointError:
        return
    with zmq.Context() as ctx:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(str(parsed))
        finally:
            sock.close(0)


# ----------------------------------------------------------------------------- entry points


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            ["worker_node", "save", "--node", "127.0.0.1:5555", "--out", "/tmp/x"],
            "argument --node: '127.0.0.1:5555' has no scheme: did you mean tcp://127.0.0.1:5555?",
        ),
        (
            ["worker_node", "describe", "--node", f"rtsp://admin:{PASSWORD}@10.0.0.7/s"],
            "argument --node: 'rtsp://admin:***@10.0.0.7/s' is a camera URL",
        ),
        (["worker_node", "save", "--listen", "tcp://0.0.0.0:*", "--out", "/tmp/x"], "give a fixed port"),
        (["worker_node", "web", "--node", "tcp://edge1:5555", "--listen", "8080x"], "argument --listen: '8080x'"),
        (
            [
                "worker_node",
                "process",
                "--node",
                "tcp://e:1",
                "--camera",
                "c",
                "--handler",
                "m:f",
                "--control",
                "tcp://e",
            ],
            "argument --control: 'tcp://e' has no port",
        ),
        (["worker_node", "save", "--node", "tcp://e:1", "--follow-host", "a;b", "--out", "/x"], "--follow-host"),
        (["worker_node", "--metrics-port", "99999", "top", "--node", "tcp://e:1"], "argument --metrics-port"),
        (["capture_node", "--control", "tcp://127.0.0.1:0;10.0.0.1:5555"], "names a source address"),
        (["capture_node", "--bind", "127.0.0.1:5556"], "did you mean tcp://127.0.0.1:5556?"),
        (["capture_node", "--connect", "tcp://127.0.0.1:*"], "port '*' (any free port) is for binding"),
        (["capture_node", "--metrics-port", "0.0.0.0"], "argument --metrics-port: '0.0.0.0' has no port"),
    ],
)
def test_every_entry_point_refuses_a_bad_endpoint_with_one_line(command: list[str], message: str) -> None:
    done = run(*command)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr + done.stdout


def test_a_config_file_endpoint_is_refused_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\ncontrol = "localhost:5555"\n[[camera]]\nid = "a"\n')
    done = run("capture_node", "--config", str(config))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        "node.toml: node.control: 'localhost:5555' has no scheme: did you mean tcp://localhost:5555?"
    ), done.stderr
