"""Across hosts for real: capture and worker nodes in separate network namespaces."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.netns import Host, Network
from tests.support.processes import ROOT, NodeProcess, Processes, hold, wait_until
from tests.test_end_to_end import saved_files
from tests.test_security import keys_cli

PY = sys.executable


@pytest.fixture
def network() -> Iterator[Network]:
    with Network() as net:
        yield net


def start_capture(nodes: Processes, host: Host, *args: str) -> NodeProcess:
    """Bound to every address; plaintext (--insecure) unless the test gives keys."""
    plain = [] if "--key" in args else ["--insecure"]
    node = nodes.start_argv(host.command([PY, "-m", "capture_node", "--control", "tcp://0.0.0.0:5555", *plain, *args]))
    node.wait_for(r"camera \S+: streaming")
    return node


def start_probe(
    nodes: Processes, host: Host, node: Host, camera: str = "cam1", pull: bool = False, receiver: bool = False
) -> NodeProcess:
    argv = [PY, str(ROOT / "tests/support/age_probe.py"), f"tcp://{node.address}:5555", camera]
    argv += (["--pull"] if pull else []) + (["--receiver"] if receiver else [])
    probe = nodes.start_argv(host.command(argv))
    probe.wait_for(r"^frame ", timeout=30)
    return probe


def frames_of(probe: NodeProcess) -> list[tuple[int, int, int]]:
    """(seq, capture_ns, received_ns) of every frame the probe got so far."""
    return [tuple(map(int, line.split()[1:4])) for line in probe.lines if line.startswith("frame ")]  # type: ignore[misc]


def tree_rss_kb(namespace: str) -> int:
    """Resident memory of every process in a namespace."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def test_frames_flow_from_a_camera_host_to_worker_hosts(nodes: Processes, network: Network, tmp_path: Path) -> None:
    """A camera host (RTSP), an edge box, a save host, a processing host and a viewer host,
    each its own network stack; workers find the cameras through the node's describe. Every
    hop is CURVE-encrypted with keys made by framebus-keys, as the README's setup does it."""
    camera, edge, saver, processor, viewer = (
        network.add_host(n) for n in ("camera", "edge", "saver", "processor", "viewer")
    )
    keys = tmp_path / "keys"
    for name in ("edge", "saver", "processor", "viewer"):
        keys_cli("generate", str(keys / name), "--name", name)
    for name in ("saver", "processor", "viewer"):
        keys_cli("allow", str(keys / "edge-allowed"), str(keys / name / f"{name}.key"))
    keys_cli("allow", str(keys / "processor-allowed"), str(keys / "viewer/viewer.key"))

    def key(name: str) -> list[str]:
        return ["--key", str(keys / name / f"{name}.key_secret")]

    def server_key(name: str) -> list[str]:
        return ["--server-key", str(keys / name / f"{name}.key")]

    server = nodes.start_argv(
        camera.command(
            [
                "/usr/bin/python3",
                str(ROOT / "tests/support/rtsp_server.py"),
                "--address",
                camera.address,
                "--width",
                "320",
                "--height",
                "240",
            ]
        )
    )
    url = server.wait_for(r"READY (\S+)").group(1)
    start_capture(
        nodes, edge, "--source", url, "--camera-id", "door", *key("edge"), "--allow", str(keys / "edge-allowed")
    )
    node = f"tcp://{edge.address}:5555"
    out = tmp_path / "saved"
    save = nodes.start_argv(
        saver.command(
            [PY, "-m", "worker_node", "save", "--node", node, "--out", str(out), "--every-n", "1", "--count", "20"]
            + key("saver")
            + server_key("edge")
        )
    )
    process = nodes.start_argv(
        processor.command(
            [
                PY,
                "-m",
                "worker_node",
                "process",
                "--node",
                node,
                "--camera",
                "door",
                "--handler",
                "framebus.worker_node.handlers.motion:MotionDetector",
                "--control",
                "tcp://0.0.0.0:5575",
                *key("processor"),
                *server_key("edge"),
                "--allow",
                str(keys / "processor-allowed"),
            ]
        )
    )
    example = [PY, str(ROOT / "docs/examples/read_remote_camera.py")]
    view = nodes.start_argv(
        viewer.command([*example, node, "door", "--frames", "10", *key("viewer"), *server_key("edge")])
    )
    derived = nodes.start_argv(
        viewer.command(
            [
                PY,
                str(ROOT / "docs/examples/read_remote_camera.py"),
                f"tcp://{processor.address}:5575",
                "door/annotated",
                "--frames",
                "10",
                *key("viewer"),
                *server_key("processor"),
            ]
        )
    )
    assert save.wait_exit(60) == 0, save.output
    assert len(saved_files(out)["door"]) == 20
    assert view.wait_exit(60) == 0, view.output
    assert view.output.count("320x240") == 10
    assert derived.wait_exit(60) == 0, derived.output + process.output
    assert derived.output.count("320x240") == 10


# Reconnecting after an outage waits for the kernel, whatever the mode: a connection attempt
# made while the link is down waits for ARP (probes 1 s apart, EHOSTUNREACH after ~3 s), then
# libzmq retries after RECONNECT_IVL_MAX (0.5 s). So the first frame comes 0-1.1 s after the link
# returns, in subscribe and pull mode alike: that part is the network stack's, not framebus's.
RESUME_WITHIN_S = 2.0
ASKS_WITHIN_S = 0.2  # pull mode: from the new connection to the first frame (was up to 2 s)
PULL_BEHIND_SUBSCRIBE_S = 0.3  # pull resumes no later than subscribe, give or take jitter


def test_partition_heals_with_fresh_frames_and_no_stale_ones(nodes: Processes, network: Network) -> None:
    """After a 20 s outage the first fresh frame comes as soon as the connection is made again, in
    pull mode too: a pull request lost with the old connection is sent again the moment a new one
    is up (it waited for a 2 s retry before), by RemoteCapture and by FrameReceiver alike. The
    three consumers share one worker host, so one link and one ARP entry: pull and subscribe
    wait for the same kernel, and pull must not add to it."""
    edge, worker = network.add_host("edge"), network.add_host("worker")
    start_capture(nodes, edge, "--width", "640", "--height", "360")
    probes = {
        "subscribe": start_probe(nodes, worker, edge),
        "pull": start_probe(nodes, worker, edge, pull=True),
        "pull-receiver": start_probe(nodes, worker, edge, pull=True, receiver=True),
    }
    rss_before = tree_rss_kb(edge.namespace), tree_rss_kb(worker.namespace)

    before = {mode: len(probe.lines) for mode, probe in probes.items()}
    down_ns = time.time_ns()
    worker.link_down()
    for mode, probe in probes.items():
        probe.wait_for(r"^status stale", timeout=10, start=before[mode])
    hold(20)  # the outage
    rss_during = tree_rss_kb(edge.namespace), tree_rss_kb(worker.namespace)
    seen = {mode: len(probe.lines) for mode, probe in probes.items()}
    up_ns = time.time_ns()
    worker.link_up()
    for mode, probe in probes.items():
        probe.wait_for(r"^frame ", timeout=5, start=seen[mode])

    resumed_s: dict[str, float] = {}
    report = []
    for mode, probe in probes.items():
        after = [f for f in frames_of(probe) if f[2] > up_ns]
        resumed_s[mode] = (after[0][2] - up_ns) / 1e9
        stale = [f for f in after if f[1] < up_ns - 1_000_000_000]
        assert not stale, (
            f"{mode}: frames from before the partition handed over as new: {stale[:3]} (link down at {down_ns})"
        )
        line = f"{mode} {resumed_s[mode]:.3f} s"
        if mode != "subscribe":  # the stream's connection (not the control endpoint's) made again
            handshakes = [
                int(line.split()[1])
                for line in probe.lines
                if line.startswith("link ") and "HANDSHAKE_SUCCEEDED" in line and ":5555:" not in line
            ]
            connected_ns = min(t for t in handshakes if t > up_ns)
            asked_s = (after[0][2] - connected_ns) / 1e9
            line += f" (connected at {(connected_ns - up_ns) / 1e9:.3f} s, first frame {asked_s * 1000:.1f} ms later)"
            assert asked_s < ASKS_WITHIN_S, line
        report.append(line)
    print(f"partition of 20 s: first fresh frame after the link returned: {'; '.join(report)};"
          f" RSS kB edge/worker {rss_before} -> {rss_during}")  # fmt: skip
    for delay in resumed_s.values():
        assert delay < RESUME_WITHIN_S, report
        assert delay < resumed_s["subscribe"] + PULL_BEHIND_SUBSCRIBE_S, report
    assert rss_during[0] < rss_before[0] + 20_000 and rss_during[1] < rss_before[1] + 20_000


def test_capture_node_killed_and_restarted_workers_resume(nodes: Processes, network: Network) -> None:
    edge, worker = network.add_host("edge"), network.add_host("worker")
    node = start_capture(nodes, edge, "--width", "320", "--height", "240")
    probe = start_probe(nodes, worker, edge)
    node.kill()  # SIGKILL: the camera processes notice their parent is gone and exit
    wait_until(lambda: tree_rss_kb(edge.namespace) == 0, 10, "the camera processes to exit")
    seen = len(probe.lines)
    restart_ns = time.time_ns()
    node = start_capture(nodes, edge, "--width", "320", "--height", "240")
    probe.wait_for(r"^frame ", timeout=5, start=seen)
    first = min(f[2] for f in frames_of(probe) if f[2] > restart_ns)
    streaming_ns = log_time_ns(node.wait_for(r"^(\S+ \S+) INFO capture_node.camera: camera cam1: streaming").group(1))
    print(
        f"worker resumed {(first - streaming_ns) / 1e9:.2f} s after the restarted node streamed, "
        f"{(first - restart_ns) / 1e9:.2f} s after the restart command (process start-up included)"
    )
    assert (first - streaming_ns) / 1e9 < 1.0
    assert (first - restart_ns) / 1e9 < 3.0


def log_time_ns(stamp: str) -> int:
    """The time of a log line ('2026-11-25 19:17:47,123', local time) in ns since the epoch."""
    seconds, _, millis = stamp.partition(",")
    return int((time.mktime(time.strptime(seconds, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000) * 1e9)


@pytest.mark.parametrize("mode", ["plain", "subscribe", "pull"])
@pytest.mark.parametrize("fraction", [0.5, 0.25])
def test_slow_link_keeps_frame_age_bounded(
    nodes: Processes, network: Network, fraction: float, mode: str, tmp_path: Path
) -> None:
    """A link at half / a quarter of the stream's rate: frame age stays within a few frame
    transmit times instead of growing to seconds as kernel buffers fill."""
    edge, worker = network.add_host("edge"), network.add_host("worker")
    config = tmp_path / "node.toml"  # "plain": conflation alone, the kernel's send buffer unlimited
    lowat = "notsent_lowat = 0\n" if mode == "plain" else ""
    config.write_text(f'[node]\ncontrol = "tcp://0.0.0.0:5555"\n[[camera]]\nid = "cam1"\n{lowat}')
    start_capture(nodes, edge, "--config", str(config))
    probe = start_probe(nodes, worker, edge, pull=mode == "pull")
    mean_bytes = 130_000  # the 720p test picture at quality 80
    rate = int(mean_bytes * 8 * 30 * fraction)
    edge.limit_rate(f"{rate // 1000}kbit")
    hold(5)  # let the queues settle
    start_ns = time.time_ns()
    hold(20)  # the measurement window
    window = [f for f in frames_of(probe) if f[2] > start_ns]
    ages = np.array([(r - c) / 1e6 for _, c, r in window])
    transmit_ms = mean_bytes * 8 / rate * 1000
    p50, p99 = np.percentile(ages, 50), np.percentile(ages, 99)
    print(
        f"{mode} at {fraction:.2f} of the stream rate: frame age p50 {p50:.0f} ms, p99 {p99:.0f} ms "
        f"({p99 / transmit_ms:.1f} frame transmit times of {transmit_ms:.0f} ms); {len(window) / 20:.1f} fps"
    )
    # Targets: p99 within 2 transmit times (pull) or 3 (subscribe); measured 1.3-1.7 and 2.6-2.8
    # on a quiet machine. The margin keeps a loaded 2-core box green; a FIFO or plain
    # conflation without TCP_NOTSENT_LOWAT sits at 7+ transmit times and grows.
    if mode == "plain":  # the baseline the other two improve on: this is why they exist
        assert p50 > 3 * transmit_ms, f"plain conflation was unexpectedly fresh: p50 {p50:.0f} ms"
        return
    limit = 2 if mode == "pull" else 3
    assert p99 <= limit * transmit_ms * 1.5, f"p99 {p99:.0f} ms is far more than {limit} transmit times"
    assert np.mean(ages[-20:]) < np.mean(ages[:20]) + transmit_ms, "age grows over time"


def test_edge_box_behind_nat_connects_out_to_a_listening_worker(
    nodes: Processes, network: Network, tmp_path: Path
) -> None:
    edge, worker = network.add_host("edge"), network.add_host("worker")
    edge.refuse_incoming()
    unreachable = subprocess.run(
        worker.command([PY, "-c", f"import socket; socket.create_connection(('{edge.address}', 5555), timeout=1)"]),
        capture_output=True,
    )
    assert unreachable.returncode != 0, "the worker host must not reach the edge box"
    probe = nodes.start_argv(
        worker.command(
            [PY, str(ROOT / "tests/support/age_probe.py"), "tcp://0.0.0.0:6000", "-", "--listen", "--work", "0.1"]
        )
    )
    probe.wait_for("opened")
    start_capture(
        nodes,
        edge,
        "--camera-id",
        "natcam",
        "--width",
        "640",
        "--height",
        "360",
        "--connect",
        f"tcp://{worker.address}:6000",
    )
    probe.wait_for(r"^frame ", timeout=15)
    hold(4)  # a consumer 3x slower than the camera, for a while
    frames = frames_of(probe)
    ages = np.array([(r - c) / 1e6 for _, c, r in frames[3:]])
    print(
        f"through NAT, consumer 3x slower than the camera: age p50 {np.percentile(ages, 50):.0f} ms, p99 {np.percentile(ages, 99):.0f} ms over {len(ages)} frames"
    )
    assert len(ages) >= 20
    assert np.percentile(ages, 99) < 33 + 100, "conflation must hold in the reverse direction too"
    # Skipping, not queueing: a backlog would hand it consecutive frames every time. One late
    # frame of a camera on a loaded machine can still make two neighbours (3 apart is the rule).
    steps = np.diff([seq for seq, _, _ in frames])
    assert np.median(steps) >= 3 and np.mean(steps >= 2) >= 0.9, (
        f"a slow consumer must skip to the newest frame: {steps}"
    )
