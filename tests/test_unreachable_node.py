"""A worker pointed at a node that does not answer says so within a few seconds: which endpoint,
and the likely cause (nothing listening, a wrong port, a CURVE key problem, a firewall). It
keeps retrying, keeps saying so at a limited rate, and says when the node answers again. `web`
shows it on its page and in /api/status, `top` in its table. Real workers, real peers (a real
node, an HTTP server, a node with keys, a firewall in a network namespace)."""

from __future__ import annotations

import http.server
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.support.netns import Network
from tests.support.processes import NodeProcess, Processes, wait_until
from tests.test_metrics import free_port
from tests.test_security import Keys, keys  # noqa: F401 - a fixture
from tests.test_web import CHROMIUM, CHROMIUM_ARGS, get

SAY_WITHIN_S = 6.0  # after the worker started (it says it after 3 s; a loaded machine needs a margin)
STARTED = r"INFO worker_node(\.web)?: (saving to|web viewer on)"
LINE = r"WARNING worker_node\.receiver: node (?P<node>\S+) is not answering \(for \d+ s\): (?P<why>.*); retrying"


@pytest.fixture
def http_port() -> Iterator[int]:
    """Something that is not a node on a port a user might mistake for one: an HTTP server."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def said(worker: NodeProcess, endpoint: str) -> str:
    """The cause the worker gave for `endpoint`, waiting for it at most SAY_WITHIN_S once started."""
    worker.wait_for(STARTED, 30)  # Python and OpenCV import slowly on a loaded machine
    m = worker.wait_for(LINE.replace(r"(?P<node>\S+)", re.escape(endpoint)), SAY_WITHIN_S)
    return m.group("why")


def save(nodes: Processes, endpoint: str, tmp_path: Path, *extra: str) -> NodeProcess:
    return nodes.worker("save", "--node", endpoint, "--out", str(tmp_path / "out"), *extra)


def test_nothing_listening(nodes: Processes, tmp_path: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    why = said(save(nodes, endpoint, tmp_path), endpoint)
    assert why.startswith("connection refused: nothing listens there (is the node running? is the port right?)"), why


def test_a_port_where_something_else_listens(nodes: Processes, tmp_path: Path, http_port: int) -> None:
    endpoint = f"tcp://127.0.0.1:{http_port}"
    why = said(save(nodes, endpoint, tmp_path), endpoint)
    # An HTTP server waits for a request line: no handshake (or a failed one) either way.
    assert re.search(r"not a (framebus node|node's control endpoint) .*\(a wrong port", why), why


def test_a_cameras_frame_port_instead_of_the_node(nodes: Processes, tmp_path: Path) -> None:
    """A ZeroMQ socket that is not a control endpoint (a PUB): the handshake fails (or the PUB hangs up)."""
    capture, _ = nodes.capture("--fps", "5")
    frames = capture.wait_for(r"camera cam1: .*frames on (tcp://\S+)").group(1)
    why = said(save(nodes, frames, tmp_path), frames)
    assert why == (
        "something listens there but the ZeroMQ handshake fails: "
        "not a node's control endpoint there (a wrong port, or a camera's frame port?)"
    ), why


@pytest.mark.parametrize(
    ("worker_keys", "expected"),
    [
        ("none", "the node requires CURVE keys: give --key and --server-key"),
        ("wrong server key", "the ZeroMQ handshake fails: a CURVE key mismatch (--server-key is not this node's"),
        ("not allowed", "the node refuses this worker's key: add its public key to the node's allow-list"),
    ],
)
def test_curve_key_problems(
    nodes: Processes,
    tmp_path: Path,
    keys: Keys,  # noqa: F811 - the fixture
    worker_keys: str,
    expected: str,
) -> None:
    _, control = nodes.capture("--key", keys.secret("node"), "--allow", str(keys.allow), "--fps", "5")
    args = {
        "none": [],
        "wrong server key": ["--key", keys.secret("viewer"), "--server-key", keys.public("stranger")],
        "not allowed": ["--key", keys.secret("stranger"), "--server-key", keys.public("node")],
    }[worker_keys]
    why = said(save(nodes, control, tmp_path, *args), control)
    assert why.startswith(expected), why


def test_a_node_that_uses_no_keys_for_a_worker_that_does(
    nodes: Processes,
    tmp_path: Path,
    keys: Keys,  # noqa: F811 - the fixture
) -> None:
    _, control = nodes.capture("--fps", "5")
    worker = save(nodes, control, tmp_path, "--key", keys.secret("viewer"), "--server-key", keys.public("node"))
    assert said(worker, control).startswith("the node does not use CURVE keys but this worker does"), worker.output


def test_a_firewall_that_drops_packets(nodes: Processes, tmp_path: Path) -> None:
    with Network() as network:
        edge, host = network.add_host("edge"), network.add_host("worker")
        edge.refuse_incoming()  # every new connection to it is dropped, silently
        capture = nodes.start_argv(
            edge.command([sys.executable, "-m", "capture_node", "--control", "tcp://0.0.0.0:5555", "--insecure"])
        )
        capture.wait_for(r"camera \S+: streaming")
        endpoint = f"tcp://{edge.address}:5555"
        worker = nodes.start_argv(
            host.command([sys.executable, "-m", "worker_node", "save", "--node", endpoint, "--out", str(tmp_path)])
        )
        why = said(worker, endpoint)
        assert why.startswith("no connection at all: the host is down or unreachable, or a firewall drops"), why


def test_it_keeps_saying_so_at_a_limited_rate_and_says_when_the_node_answers(nodes: Processes, tmp_path: Path) -> None:
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    worker = save(nodes, endpoint, tmp_path, "--every-n", "1")
    said(worker, endpoint)
    start = time.monotonic()
    lines = re.compile(LINE.replace(r"(?P<node>\S+)", re.escape(endpoint)))
    worker.wait_for(r"is not answering \(for 3[0-9] s\)", 45)  # said again after 30 s, not before
    assert len([line for line in worker.lines if lines.search(line)]) == 2
    assert time.monotonic() - start > 25
    nodes.capture("--control", endpoint, "--fps", "5")
    worker.wait_for(rf"INFO worker_node\.receiver: node {re.escape(endpoint)} answers again", 15)
    wait_until(lambda: list((tmp_path / "out").glob("*.jpg")), 15, "frames saved once it answers")
    assert worker.stop() < 2.0 and worker.proc.returncode == 0


@pytest.mark.browser
def test_web_shows_the_node_on_its_page_and_in_its_status(nodes: Processes) -> None:
    _, control = nodes.capture("--fps", "5")
    silent = f"tcp://127.0.0.1:{free_port()}"
    viewer = nodes.worker("web", "--node", control, "--node", silent, "--listen", "127.0.0.1:0")
    url = viewer.wait_for(r"web viewer on (http://\S+)").group(1)
    said(viewer, silent)

    def nodes_status() -> list[dict[str, object]]:
        found: list[dict[str, object]] = json.loads(get(url + "api/status")[2])["nodes"]
        return found

    wait_until(lambda: any(not n["answering"] for n in nodes_status()), 10, "the node in /api/status")
    by_node = {n["node"]: n for n in nodes_status()}
    assert by_node[control]["answering"] is True
    assert by_node[silent]["answering"] is False
    assert str(by_node[silent]["problem"]).startswith("connection refused: nothing listens there")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            banner = page.locator(f'#nodes .node[data-node="{silent}"]')
            banner.wait_for(timeout=10_000)
            text = banner.inner_text()
            assert f"node {silent} is not answering" in text and "connection refused" in text, text
            assert page.locator(f'#nodes .node[data-node="{control}"]').count() == 0
            page.locator('figure[data-camera="cam1"]').wait_for(timeout=10_000)  # the other node's camera shows
        finally:
            browser.close()
    assert viewer.stop() < 2.0


def test_top_shows_the_node_in_its_table(nodes: Processes, monkeypatch: pytest.MonkeyPatch) -> None:
    silent = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("COLUMNS", "200")  # rich sizes its table to the terminal; tests have none
    top = nodes.worker("top", "--node", silent, "--count", "12", "--refresh", "0.5s")
    assert top.wait_exit(30) == 0, top.output
    rows = [line for line in top.output.splitlines() if silent in line and "not answering" in line]
    assert rows, top.output
    assert re.search(rf"node {re.escape(silent)}: connection refused: nothing listens there", top.output), top.output
