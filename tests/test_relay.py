"""`worker-node relay` on one host: real capture nodes, a real relay process, real workers."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from framebus.common import jpeg
from framebus.common.protocol import CameraInfo, Frame, FrameHeader, encode_frame
from framebus.worker_node.access import Access
from framebus.worker_node.discovery import describe
from framebus.worker_node.receiver import FrameReceiver
from framebus.worker_node.relay import parse_upstream
from tests.support.fake_node import FakeNode
from tests.support.media import frame_number, write_numbered_video
from tests.support.processes import ROOT, NodeProcess, Processes, hold, wait_until

PY = sys.executable


def start_relay(
    nodes: Processes, *args: str, control: str = "tcp://127.0.0.1:*", waits: bool = True
) -> tuple[NodeProcess, str]:
    """A relay and its control endpoint; `waits`: once it relays a camera."""
    relay = nodes.worker("relay", "--control", control, *args)
    endpoint = relay.wait_for(r"control endpoint (\S+),").group(1)
    if waits:
        relay.wait_for(r"camera \S+: relayed on")
    return relay, endpoint


def described(control: str, count: int, timeout: float = 20.0) -> tuple[CameraInfo, ...]:
    """The relay's describe reply, once it lists `count` cameras."""
    with zmq.Context() as ctx:
        return wait_until(lambda: (c := describe(ctx, control).cameras) and len(c) >= count and c, timeout, "cameras")  # type: ignore[return-value]


def receive(
    endpoints: list[str],
    cameras: list[str],
    count: int,
    timeout: float = 20.0,
    pull: bool = False,
    access: Access | None = None,
) -> dict[str, list[Frame]]:
    """`count` frames of each camera, read from `endpoints` with the FrameReceiver workers use.
    The JPEG of each frame is copied (a frame's view dies with its message)."""
    ctx = zmq.Context()
    receiver = FrameReceiver(ctx, endpoints, cameras, pull=pull, access=access)
    got: dict[str, list[Frame]] = {c: [] for c in cameras}
    deadline = time.monotonic() + timeout
    try:
        while any(len(frames) < count for frames in got.values()):
            assert time.monotonic() < deadline, f"frames received: { {c: len(f) for c, f in got.items()} }"
            for _sub, frame in receiver.poll(0.2):
                got[frame.header.camera].append(Frame(frame.header, memoryview(bytes(frame.jpeg))))
    finally:
        receiver.close()
        ctx.destroy(0)
    return got


def test_two_sites_doors_are_relayed_apart(nodes: Processes) -> None:
    """Both nodes have a camera `door`: through the relay they are site1/door and site2/door,
    each with its own pictures, found through the relay's one describe endpoint."""
    _, edge1 = nodes.capture("--camera-id", "door", "--fps", "10", "--width", "320")
    _, edge2 = nodes.capture("--camera-id", "door", "--fps", "10", "--width", "160")
    relay, control = start_relay(nodes, "--node", f"site1={edge1}", "--node", f"site2={edge2}")
    cameras = described(control, 2)
    assert sorted(c.camera for c in cameras) == ["site1/door", "site2/door"]
    assert all(c.pull_endpoint for c in cameras)
    got = receive([control], ["site1/door", "site2/door"], 5)
    assert {f.header.width for f in got["site1/door"]} == {320}
    assert {f.header.width for f in got["site2/door"]} == {160}
    pulled = receive([control], ["site2/door"], 5, pull=True)
    seqs = [f.header.seq for f in pulled["site2/door"]]
    assert seqs == sorted(set(seqs)), "pulled frames come newest-after-last, never twice"
    assert relay.stop() < 3.0 and relay.proc.returncode == 0, relay.output  # SIGTERM: a clean, quick exit


def test_the_jpeg_is_forwarded_as_it_came(nodes: Processes) -> None:
    """The same capture through the relay and directly: byte for byte the same JPEG (nothing
    decoded, nothing encoded again), the same capture time, the source's metadata kept."""
    _, edge = nodes.capture("--camera-id", "cam1", "--fps", "15", "--width", "320")
    _, control = start_relay(nodes, "--node", f"edge={edge}")
    ctx = zmq.Context()
    direct = FrameReceiver(ctx, [edge], ["cam1"])
    relayed = FrameReceiver(ctx, [control], ["edge/cam1"])
    seen: dict[int, bytes] = {}
    matched = 0
    deadline = time.monotonic() + 20
    try:
        while matched < 5:
            assert time.monotonic() < deadline, f"{matched} frames matched"
            for receiver in (direct, relayed):
                for _sub, frame in receiver.poll(0.05):
                    jpeg = bytes(frame.jpeg)
                    other = seen.pop(frame.header.capture_ns, None)
                    if other is None:
                        seen[frame.header.capture_ns] = jpeg
                    else:
                        assert other == jpeg
                        matched += 1
    finally:
        direct.close()
        relayed.close()
        ctx.destroy(0)


def test_a_hostile_upstream_costs_one_line_not_the_relay(nodes: Processes) -> None:
    """An upstream node that sends malformed messages between valid frames: the valid frames
    are relayed, the rest is one rate-limited line, and the relay keeps running."""
    picture = jpeg.encode_bgr(np.full((48, 64, 3), 90, np.uint8), 80)

    def message(n: int) -> bytes:
        if n % 2:
            return b"FB\x01\x01" + b"\xff" * 40  # a frame whose header is garbage
        return encode_frame(FrameHeader("cam1", n, time.time_ns(), time.time_ns(), 64, 48), picture)

    fake = FakeNode("cam1", 64, 48, message, interval=0.002)
    try:
        relay, control = start_relay(nodes, "--node", f"rogue={fake.endpoint}")
        got = receive([control], ["rogue/cam1"], 1)
        assert got["rogue/cam1"][0].header.width == 64
        hold(2.0)  # ~500 malformed messages
        assert receive([control], ["rogue/cam1"], 3)
        assert relay.proc.poll() is None
        malformed = [line for line in relay.lines if "malformed" in line]
        assert 1 <= len(malformed) <= 2, relay.output
    finally:
        fake.close()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--node", "a/b=tcp://127.0.0.1:5555"], "node name 'a/b' is invalid"),
        (["--node", "x=tcp://127.0.0.1:5555", "--node", "x=tcp://127.0.0.1:5556"], "node name 'x' is given to"),
        (["--listen", "tcp://127.0.0.1:7001"], "give the name of the node that connects here"),
        (["--node", "tcp://127.0.0.1:5555", "--control", "tcp://0.0.0.0:*"], "can be reached from other hosts"),
        ([], "give at least one --node"),
        (["--node", "tcp://127.0.0.1:5555", "--allow", "/tmp"], "--allow needs --key"),
    ],
)
def test_mistakes_are_one_line(nodes: Processes, argv: list[str], says: str) -> None:
    relay = nodes.worker("relay", *argv)
    assert relay.wait_exit(20) == 2
    errors = [line for line in relay.lines if line.strip()]
    assert any(says in line for line in errors), relay.output
    assert "Traceback" not in relay.output


def test_a_node_name_comes_from_the_host_unless_given() -> None:
    assert parse_upstream("tcp://edge-1.example:5555").name == "edge-1.example"
    assert parse_upstream("tcp://[::1]:5555").name == "1"
    assert parse_upstream("ipc:///run/fb/node7").name == "node7"
    assert parse_upstream("site1=tcp://10.0.0.7:5555").name == "site1"
    with pytest.raises(ValueError, match="invalid"):
        parse_upstream("=tcp://10.0.0.7:5555")


def test_workers_resume_within_a_second_of_a_relay_restart(nodes: Processes) -> None:
    """The relay's ports are stable, so the workers' sockets reconnect by themselves."""
    _, edge = nodes.capture("--camera-id", "cam1", "--fps", "20", "--width", "160")
    port = free_port()
    control = f"tcp://127.0.0.1:{port}"
    relay, _ = start_relay(nodes, "--node", f"edge={edge}", control=control)
    probe = nodes.start(str(ROOT / "tests/support/age_probe.py"), [control, "edge/cam1", "--receiver"])
    probe.wait_for(r"^frame ", timeout=20)
    relay.stop(signal.SIGKILL)
    killed_ns = time.time_ns()
    mark = len(probe.lines)
    start_relay(nodes, "--node", f"edge={edge}", control=control)  # back: it answers describe
    up_ns = time.time_ns()
    probe.wait_for(r"^frame ", timeout=10, start=mark)
    first = next(
        int(line.split()[3])
        for line in probe.lines[mark:]
        if line.startswith("frame ") and int(line.split()[3]) > killed_ns
    )
    assert (first - up_ns) / 1e9 <= 1.0, f"first frame {(first - up_ns) / 1e9:.2f} s after the relay was back"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_node_behind_nat_connects_out_to_the_relay(nodes: Processes) -> None:
    """No capture-side change: the node's existing --connect pushes to the relay's --listen;
    the relay never connects to the node (its control endpoint is not even given)."""
    listen = f"tcp://127.0.0.1:{free_port()}"
    relay, control = start_relay(nodes, "--listen", f"site3={listen}", waits=False)
    nodes.capture("--camera-id", "yard", "--fps", "10", "--width", "160", "--connect", listen)
    relay.wait_for(r"camera site3/yard: relayed on")
    assert [c.camera for c in described(control, 1)] == ["site3/yard"]
    got = receive([control], ["site3/yard"], 3)
    assert {f.header.width for f in got["site3/yard"]} == {160}


def test_an_every_frame_camera_is_relayed_every_frame(nodes: Processes, tmp_path: Path) -> None:
    """Once a worker reads the relay, it gets every frame of the file, in order, none missing
    (the relay waits for the worker's queue as a node does; the file is paced at 30 fps)."""
    video = write_numbered_video(tmp_path / "numbered.avi", 900)
    _, edge = nodes.capture("--source", str(video), "--camera-id", "clip", "--every-frame")
    _, control = start_relay(nodes, "--node", f"files={edge}")
    assert [c.delivery for c in described(control, 1)] == ["every-frame"]
    got = receive([control], ["files/clip"], 60)
    numbers = [frame_number(jpeg.decode_bgr(bytes(f.jpeg))) for f in got["files/clip"]]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers


def test_a_hostile_worker_costs_the_relay_a_few_lines(nodes: Processes) -> None:
    """Garbage, wrong kinds and floods on the relay's control and pull endpoints: the relay
    keeps serving the others, and says so in a few rate-limited lines."""
    _, edge = nodes.capture("--camera-id", "cam1", "--fps", "10", "--width", "160")
    relay, control = start_relay(nodes, "--node", f"edge={edge}")
    pull = described(control, 1)[0].pull_endpoint
    junk = [
        b"",
        b"FB",
        b"FB\x01\x05" + b"\xff" * 60,
        encode_frame(FrameHeader("x", 0, 1, 1, 8, 8), b"\xff\xd8\xff\xd9"),
    ]
    with zmq.Context() as ctx:
        for endpoint in (control, pull):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
            for i in range(2000):
                sock.send_multipart([junk[i % len(junk)]] * (1 + i % 3))
            sock.close(0)
    assert receive([control], ["edge/cam1"], 5)  # the others are still served
    assert relay.proc.poll() is None
    complaints = [line for line in relay.lines if "WARNING" in line]
    assert 1 <= len(complaints) <= 12, relay.output
