"""CURVE with an allow-list, end to end: real capture, process and save workers, real keys made by
`framebus-keys`, real refusals. A worker is refused for an unknown key, a wrong server key or no
CURVE at all; a revoked key stops receiving while the others go on."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq

from common.keys import load_key_pair, load_public_key
from common.latest import LatestSocket
from common.protocol import Frame, decode
from common.security import CurveClient
from common.sockets import StreamOptions, connect_frame_subscriber, connect_pull_client
from tests.processes import NodeProcess, Processes, wait_until
from tests.test_end_to_end import saved_files
from worker_node.discovery import describe

KEYS_CLI = [sys.executable, "-m", "common.keys_cli"]


@dataclass(frozen=True)
class Keys:
    root: Path
    allow: Path

    def secret(self, name: str) -> str:
        return str(self.root / f"{name}.key_secret")

    def public(self, name: str) -> str:
        return str(self.root / f"{name}.key")

    def client(self, name: str, server: str = "node") -> CurveClient:
        return CurveClient(load_key_pair(Path(self.secret(name))), load_public_key(Path(self.public(server))))


def keys_cli(*args: str) -> str:
    done = subprocess.run([*KEYS_CLI, *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    """node, viewer, ops and stranger key pairs; viewer and ops are allowed."""
    root = tmp_path / "keys"
    for name in ("node", "viewer", "ops", "stranger", "proc"):
        keys_cli("generate", str(root), "--name", name)
    allow = tmp_path / "allowed"
    keys_cli("allow", str(allow), str(root / "viewer.key"))
    keys_cli("allow", str(allow), str(root / "ops.key"))
    return Keys(root, allow)


def secure_node(nodes: Processes, keys: Keys) -> tuple[NodeProcess, str]:
    return nodes.capture("--key", keys.secret("node"), "--allow", str(keys.allow), "--fps", "30")


def save_worker(nodes: Processes, control: str, out: Path, *security: str) -> NodeProcess:
    return nodes.worker("save", "--node", control, "--out", str(out), "--every-n", "1", *security)


def count(out: Path) -> int:
    return sum(len(v) for v in saved_files(out).values())


def frames_until(socks: dict[str, zmq.Socket | LatestSocket], enough: int, timeout_s: float) -> dict[str, int]:
    """Frames per socket, read together until the first socket has `enough` (or the timeout)."""
    received = dict.fromkeys(socks, 0)
    poller = zmq.Poller()
    for sock in socks.values():
        poller.register(sock, zmq.POLLIN)
    names = {sock: name for name, sock in socks.items()}
    deadline = time.monotonic() + timeout_s
    while received[next(iter(socks))] < enough and time.monotonic() < deadline:
        for ready in dict(poller.poll(100)):
            name = names[ready]  # zmq.Poller reports a LatestSocket by its file descriptor
            if isinstance(decode(socks[name].recv()), Frame):
                received[name] += 1
    return received


def test_only_allowed_keys_get_frames_and_refusals_are_logged(nodes: Processes, keys: Keys, tmp_path: Path) -> None:
    node, control = secure_node(nodes, keys)
    refused = {
        "unknown key": ["--key", keys.secret("stranger"), "--server-key", keys.public("node")],
        "wrong server key": ["--key", keys.secret("viewer"), "--server-key", keys.public("stranger")],
        "plaintext": [],
    }
    strangers = {why: save_worker(nodes, control, tmp_path / why, *args) for why, args in refused.items()}
    stranger_key = re.escape(load_public_key(Path(keys.public("stranger"))).decode())
    node.wait_for(rf"refused a connection from 127\.0\.0\.1: its key {stranger_key} is not in the allow-list")
    node.wait_for(r"refused a connection on tcp://127\.0\.0\.1:\d+: (it does not use CURVE|it hung up during)")
    node.wait_for(r"refused a connection on tcp://127\.0\.0\.1:\d+: its handshake does not decrypt")

    allowed_out = tmp_path / "viewer"
    save_worker(nodes, control, allowed_out, "--key", keys.secret("viewer"), "--server-key", keys.public("node"))
    wait_until(lambda: count(allowed_out) >= 30, 30, "30 frames saved by the allowed worker")
    for why, worker in strangers.items():
        assert worker.proc.poll() is None, f"{why}: the worker should keep trying, not exit"
        assert count(tmp_path / why) == 0, why

    # Knowing a stream's endpoint is not enough either: its frame and pull sockets refuse the
    # same keys, while an allowed client on the same sockets gets frames in the same window.
    with zmq.Context() as ctx:
        (cam,) = describe(ctx, control, 5.0, keys.client("viewer")).cameras
        socks = {
            "allowed": connect_frame_subscriber(ctx, cam.endpoint, StreamOptions(), keys.client("ops")),
            "unknown key": connect_frame_subscriber(ctx, cam.endpoint, StreamOptions(), keys.client("stranger")),
            "wrong server key": connect_frame_subscriber(
                ctx, cam.endpoint, StreamOptions(), keys.client("viewer", server="stranger")
            ),
            "plaintext": connect_frame_subscriber(ctx, cam.endpoint, StreamOptions()),
        }
        pull = connect_pull_client(ctx, cam.pull_endpoint, security=keys.client("stranger"))
        try:
            received = frames_until(socks, enough=15, timeout_s=15.0)
            assert received.pop("allowed") == 15
            assert received == dict.fromkeys(received, 0)
            with pytest.raises(zmq.Again):  # IMMEDIATE: no handshake completed, nowhere to send
                pull.send(b"x", zmq.NOBLOCK)
        finally:
            for sock in [*socks.values(), pull]:
                sock.close(0)


def test_revoked_key_stops_receiving_the_others_go_on(nodes: Processes, keys: Keys, tmp_path: Path) -> None:
    node, control = secure_node(nodes, keys)
    viewer_out, ops_out = tmp_path / "viewer", tmp_path / "ops"
    save_worker(nodes, control, viewer_out, "--key", keys.secret("viewer"), "--server-key", keys.public("node"))
    save_worker(nodes, control, ops_out, "--key", keys.secret("ops"), "--server-key", keys.public("node"))
    wait_until(lambda: count(viewer_out) >= 10 and count(ops_out) >= 10, 30, "both allowed workers saving")

    mark = len(node.lines)
    assert "removed" in keys_cli("revoke", str(keys.allow), "viewer")
    node.send(signal.SIGHUP)  # the node re-reads at once; camera processes when the directory changes
    for _ in range(2):  # the node's describe socket and the camera process's sockets
        found = node.wait_for(r"allow-list .*: 1 key\(s\) revoked, 1 allowed", start=mark)
        mark = node.lines.index(found.string) + 1
    ops_then = count(ops_out)
    wait_until(lambda: count(ops_out) >= ops_then + 10, 30, "ops saving after the revocation")
    viewer_then = count(viewer_out)  # frames in flight when the connection dropped are in by now
    wait_until(lambda: count(ops_out) >= ops_then + 40, 30, "ops saving 30 more frames")
    assert count(viewer_out) == viewer_then, "the revoked worker still receives frames"
    viewer_key = re.escape(load_public_key(Path(keys.public("viewer"))).decode())
    node.wait_for(rf"refused a connection from 127\.0\.0\.1: its key {viewer_key} is not in the allow-list")


def test_secure_chain_through_a_process_worker_and_a_listening_worker(
    nodes: Processes, keys: Keys, tmp_path: Path
) -> None:
    """capture (CURVE) -> process worker (client upstream, CURVE server of its derived stream)
    -> save worker; and a node connecting out to a listening worker, also over CURVE."""
    _node, control = secure_node(nodes, keys)
    keys_cli("allow", str(keys.allow), keys.public("proc"))
    proc_allow = tmp_path / "proc-allowed"
    keys_cli("allow", str(proc_allow), keys.public("viewer"))
    proc = nodes.worker(
        "process", "--node", control, "--camera", "cam1", "--handler", "worker_node.handlers.motion:MotionDetector",
        "--control", "tcp://127.0.0.1:*", "--key", keys.secret("proc"), "--server-key", keys.public("node"),
        "--allow", str(proc_allow),
    )  # fmt: skip
    proc_control = proc.wait_for(r"control endpoint (\S+)").group(1)
    out = tmp_path / "annotated"
    nodes.worker(
        "save", "--node", proc_control, "--out", str(out), "--every-n", "1",
        "--key", keys.secret("viewer"), "--server-key", keys.public("proc"),
    )  # fmt: skip
    wait_until(lambda: len(saved_files(out).get("cam1+annotated", [])) >= 5, 60, "annotated frames over two CURVE hops")

    listen_out = tmp_path / "listened"
    with zmq.Context() as ctx:
        port = _free_port(ctx)
    listener = f"tcp://127.0.0.1:{port}"
    nodes.worker(
        "save", "--listen", listener, "--out", str(listen_out), "--every-n", "1",
        "--key", keys.secret("viewer"), "--server-key", keys.public("node"),
    )  # fmt: skip
    nodes.capture(
        "--key", keys.secret("node"), "--allow", str(keys.allow), "--camera-id", "edge", "--connect", listener
    )
    wait_until(lambda: len(saved_files(listen_out).get("edge", [])) >= 5, 30, "frames pushed to a CURVE listener")


def _free_port(ctx: zmq.Context) -> int:
    sock = ctx.socket(zmq.PUB)
    try:
        return sock.bind_to_random_port("tcp://127.0.0.1")
    finally:
        sock.close(0)


def test_a_key_allowed_later_is_admitted_without_restarting_the_worker(
    nodes: Processes, keys: Keys, tmp_path: Path
) -> None:
    """ZeroMQ gives up on a connection the node refused; the worker makes new sockets."""
    node, control = secure_node(nodes, keys)
    out = tmp_path / "late"
    save_worker(nodes, control, out, "--key", keys.secret("stranger"), "--server-key", keys.public("node"))
    node.wait_for(r"refused a connection from 127\.0\.0\.1: its key .* is not in the allow-list")
    assert count(out) == 0
    keys_cli("allow", str(keys.allow), keys.public("stranger"))
    wait_until(lambda: count(out) >= 5, 30, "frames for the key allowed after the worker started")
