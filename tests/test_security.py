"""CURVE with an allow-list, end to end: real capture, process and save workers, real keys made by
`framebus-keys`, real refusals. A worker is refused for an unknown key, a wrong server key or no
CURVE at all; a revoked key stops receiving while the others go on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq

from framebus.common.keys import load_key_pair, load_public_key
from framebus.common.latest import LatestSocket
from framebus.common.protocol import Frame, decode
from framebus.common.security import CurveClient
from framebus.common.sockets import StreamOptions, connect_frame_subscriber, connect_pull_client
from framebus.worker_node.discovery import describe
from tests.support.processes import NodeProcess, Processes, wait_until
from tests.test_end_to_end import saved_files

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
        "process", "--node", control, "--camera", "cam1", "--handler", "framebus.worker_node.handlers.motion:MotionDetector",
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


@pytest.mark.parametrize(
    ("args", "name", "endpoint"),
    [
        (["save", "--listen", "tcp://0.0.0.0:6000", "--out", "/tmp/x"], "--listen", "tcp://0.0.0.0:6000"),
        (
            ["save", "--listen", "tcp://127.evil.example:6000", "--out", "/tmp/x"],
            "--listen",
            "tcp://127.evil.example:6000",
        ),
        (
            [
                "process",
                "--node",
                "tcp://127.0.0.1:9",
                "--camera",
                "c",
                "--handler",
                "m:f",
                "--control",
                "tcp://[::]:5575",
            ],
            "control",
            "tcp://[::]:5575",
        ),
    ],
)
def test_a_plaintext_listener_other_hosts_can_reach_is_refused(args: list[str], name: str, endpoint: str) -> None:
    """The one exposure rule (common.security.check_exposure), strict about loopback:
    127.evil.example is a name anyone can point anywhere."""
    done = subprocess.run([sys.executable, "-m", "worker_node", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{name}: {endpoint} can be reached from other hosts" in lines[0], done.stderr


def test_insecure_listener_runs_and_says_so(nodes: Processes, tmp_path: Path) -> None:
    with zmq.Context() as ctx:
        port = _free_port(ctx)
    worker = nodes.worker("save", "--listen", f"tcp://0.0.0.0:{port}", "--insecure", "--out", str(tmp_path))
    worker.wait_for(rf"INSECURE: --listen tcp://0\.0\.0\.0:{port}: no CURVE keys")
    worker.wait_for(rf"listening for capture nodes on tcp://0\.0\.0\.0:{port}")
    assert worker.stop() < 2.0


NOT_REGULAR = "not a regular file (a FIFO, socket or device cannot be a key file)"


@pytest.mark.parametrize("given", ["node --key", "worker --key", "worker --server-key"])
def test_a_fifo_given_as_a_key_file_is_refused_at_once(
    nodes: Processes, keys: Keys, tmp_path: Path, given: str
) -> None:
    """Opening a FIFO blocks until a writer comes: the node or worker hung at start, silently."""
    fifo = tmp_path / "fifo.key_secret"
    os.mkfifo(fifo)
    if given == "node --key":
        proc = nodes.start(
            "capture_node", ["--control", "tcp://127.0.0.1:*", "--key", str(fifo), "--allow", str(keys.allow)]
        )
    elif given == "worker --key":
        proc = nodes.worker(
            "describe", "--node", "tcp://127.0.0.1:9", "--key", str(fifo), "--server-key", keys.public("node")
        )
    else:
        proc = nodes.worker(
            "describe", "--node", "tcp://127.0.0.1:9", "--key", keys.secret("viewer"), "--server-key", str(fifo)
        )
    assert proc.wait_exit(20) == 2
    errors = [line for line in proc.lines if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith(f"{fifo}: {NOT_REGULAR}"), proc.output
    assert "Traceback" not in proc.output


def test_fifos_in_the_allow_list_neither_hang_the_node_nor_stop_revocations(
    nodes: Processes, keys: Keys, tmp_path: Path
) -> None:
    """A FIFO there at start hung the node; one added later hung the allow-list watchers, so
    that a revoked key was never dropped."""
    os.mkfifo(keys.allow / "at-start.key")
    node, control = secure_node(nodes, keys)
    node.wait_for(
        rf"allow-list: {re.escape(str(keys.allow / 'at-start.key'))}: {re.escape(NOT_REGULAR)}; that file is ignored"
    )
    viewer_out = tmp_path / "viewer"
    save_worker(nodes, control, viewer_out, "--key", keys.secret("viewer"), "--server-key", keys.public("node"))
    wait_until(lambda: count(viewer_out) >= 10, 30, "the allowed worker saving")

    os.mkfifo(keys.allow / "later.key")
    mark = len(node.lines)
    keys_cli("revoke", str(keys.allow), "viewer")
    for _ in range(2):  # the node's describe socket and the camera process's sockets, each on its own
        found = node.wait_for(r"allow-list .*: 1 key\(s\) revoked, 1 allowed", start=mark)
        mark = node.lines.index(found.string) + 1
    viewer_key = re.escape(load_public_key(Path(keys.public("viewer"))).decode())
    node.wait_for(rf"refused a connection from 127\.0\.0\.1: its key {viewer_key} is not in the allow-list")
    assert node.proc.poll() is None
