"""DNS rebinding: the web viewer answers only requests addressed to its own names. Real HTTP
requests with forged Host headers, as a rebinding page's browser would send them, against a
real viewer following a real node."""

from __future__ import annotations

import asyncio
import http.client
import socket
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import aiohttp
import pytest

from framebus.worker_node.web_host import AllowedHosts, host_name
from tests.support.processes import NodeProcess, Processes, wait_until
from tests.test_web import cameras

PATHS = ("/", "/api/status", "/wall-worker.js", "/cameras/door.jpg", "/cameras/door.mjpg")
REBINDER = "rebind.attacker.example"  # the page's own name, now resolving to the viewer
ALIAS = "cams.example.org"  # a name the user opens the viewer by, given with --allow-host


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, str]]:
    """One node and its viewer for the module (requests do not change them): the viewer and its URL."""
    nodes = Processes()
    try:
        config = tmp_path_factory.mktemp("host") / "node.toml"
        config.write_text('[node]\ncontrol = "tcp://127.0.0.1:*"\n[[camera]]\nid = "door"\nwidth = 160\nheight = 120\n')
        _, control = nodes.capture("--config", str(config))
        web = nodes.worker("web", "--node", control, "--listen", "127.0.0.1:0", "--allow-host", ALIAS)
        url = web.wait_for(r"web viewer on (http://\S+)").group(1)
        wait_until(lambda: [c["seq"] is not None for c in cameras(url)] == [True], 30, "the camera's first frame")
        yield web, url
    finally:
        nodes.cleanup()


def request(url: str, path: str, host: str) -> tuple[int, bytes]:
    """GET `path` with the Host header `host`; for a stream, its first 4 KB."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        reply = conn.getresponse()
        return reply.status, reply.read(4096) if path.endswith(".mjpg") else reply.read()
    finally:
        conn.close()


async def open_wall(url: str, host: str) -> tuple[int, str]:
    """The wall's WebSocket as a page at http://HOST/ opens it (Origin and Host alike): its
    status, and the first message's type when it opened."""
    origin = "http://" + host
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url + "wall", headers={"Host": host, "Origin": origin}) as ws:
                await ws.send_str("want door")
                message = await ws.receive(10)
                return 101, message.type.name
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, ""


def test_a_rebinding_page_gets_nothing(viewer: tuple[NodeProcess, str]) -> None:
    web, url = viewer
    port = urlsplit(url).port
    forged = f"{REBINDER}:{port}"
    for path in PATHS:
        status, body = request(url, path, forged)
        assert status == 421, (path, status, body[:200])
        assert b"\xff\xd8" not in body and b"door" not in body, (path, body[:200])
    assert asyncio.run(open_wall(url, forged)) == (421, "")
    assert request(url, "/api/status", f"{REBINDER.upper()}.:{port}")[0] == 421  # case and a final dot
    line = web.wait_for(r"refused: Host .*rebind")
    assert f"Host '{forged}' is not a name of this viewer" in line.string, line.string
    assert f"add --allow-host {REBINDER}" in line.string, line.string
    refusals = [x for x in web.output.splitlines() if "is not a name of this viewer" in x]
    assert len(refusals) == 1, refusals  # one line a minute, however many requests
    assert "Traceback" not in web.output


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", ALIAS, "127.0.0.1"])
def test_ip_addresses_localhost_and_allowed_names_keep_working(viewer: tuple[NodeProcess, str], host: str) -> None:
    _, url = viewer
    host = host.format(port=urlsplit(url).port)
    for path in PATHS:
        status, body = request(url, path, host)
        assert status == 200, (path, status, body[:200])
    assert b"\xff\xd8" in request(url, "/cameras/door.jpg", host)[1]
    assert b"Content-Type: image/jpeg" in request(url, "/cameras/door.mjpg", host)[1]
    assert asyncio.run(open_wall(url, host)) == (101, "TEXT")  # the status comes first


def test_the_hosts_own_name_is_answered(viewer: tuple[NodeProcess, str]) -> None:
    _, url = viewer
    assert request(url, "/api/status", f"{socket.gethostname()}:{urlsplit(url).port}")[0] == 200


def test_a_request_without_host_is_answered(viewer: tuple[NodeProcess, str]) -> None:
    """Browsers always send Host; HTTP/1.0 programs may not (a rebinding page cannot leave it out)."""
    _, url = viewer
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=10) as sock:
        sock.sendall(b"GET /api/status HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200"), reply[:200]


def test_a_bad_allow_host_is_one_line() -> None:
    done = NodeProcess(
        [sys.executable, "-m", "worker_node", "web", "--node", "tcp://127.0.0.1:1", "--allow-host", "http://cams/"]
    )
    assert done.wait_exit(15) == 2
    assert "--allow-host: 'http://cams/' is not a host name" in done.output, done.output
    assert "Traceback" not in done.output


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("cams.example.org:8080", "cams.example.org"),
        ("CAMS.example.org.", "cams.example.org"),
        ("[::1]:8080", "::1"),
        ("10.0.0.7", "10.0.0.7"),
        ("evil.example:80@127.0.0.1", None),  # not of Host's form
        ("127.0.0.1:8080/x", None),
        ("[::1", None),
        ("", None),
    ],
)
def test_host_header_names(header: str, name: str | None) -> None:
    assert host_name(header) == name


def test_allowed_hosts() -> None:
    hosts = AllowedHosts({ALIAS})
    assert all(hosts.allows(h) for h in ("10.1.2.3:80", "[fe80::1]", "localhost:1", "cam.localhost", ALIAS, None))
    assert not any(hosts.allows(h) for h in (REBINDER, "localhost.example", "example.org", "a b", ""))
