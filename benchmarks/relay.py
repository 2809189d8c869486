"""`make bench-relay`: the relay against direct fan-out, measured (docs/relay.md has the figures).

    python -m benchmarks.relay [--seconds 5] [--out bench-results]

Scenarios (hosts are network namespaces, tests/support/netns.py; needs root and iproute2):
- uplink: the edge's eth0 transmit bytes (/sys/class/net/eth0/statistics, the kernel's count)
  per second with 1, 4 and 16 remote workers reading one camera directly, then through a relay;
- hop: frame age p50/p99 on loopback of a worker reading directly and one reading through a
  relay, at the same time, from the same camera;
- cpu: the relay's CPU per camera against one subscriber's (a process reading the same
  cameras with the FrameReceiver every worker uses), same cameras, same window;
- slow link: the edge's uplink limited with tc tbf below the stream's rate; frame age at a
  worker reading directly (conflated, and pull), and through a relay (subscribing, and --pull);
- restart: a relay killed (SIGKILL) and started again: seconds until its workers have frames;
- behind NAT (tests/test_relay_netns.py only): an edge that connects out to `relay --listen`,
  read by a worker on a third host through describe, pull and a pool.

tests/test_relay_netns.py runs the same functions, shorter, and asserts the figures with margin.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from benchmarks.measure import run_seconds
from tests.support.netns import Host, Network
from tests.support.processes import NodeProcess, Processes, hold

PY = sys.executable
CAMERA = ["--camera-id", "cam1", "--width", "640", "--fps", "15"]  # the test pattern: ~34 KB JPEGs
EDGE_PORT, RELAY_PORT = 5555, 6000


def capture(nodes: Processes, host: Host | None, control: str, *args: str) -> NodeProcess:
    argv = [PY, "-m", "capture_node", "--control", control, "--insecure", *CAMERA, *args]
    node = nodes.start_argv(host.command(argv) if host else argv)
    node.wait_for(r"camera \S+: streaming", timeout=30)
    return node


def relay(nodes: Processes, host: Host | None, control: str, *args: str) -> NodeProcess:
    argv = [PY, "-m", "worker_node", "relay", "--control", control, "--insecure", *args]
    started = nodes.start_argv(host.command(argv) if host else argv)
    started.wait_for(r"camera \S+: relayed on", timeout=30)
    return started


def probe(nodes: Processes, host: Host | None, streams: Sequence[tuple[str, str]], *args: str) -> NodeProcess:
    argv = [PY, "-m", "benchmarks.relay_probe", *args]
    for endpoint, camera in streams:
        argv += ["--stream", endpoint, camera]
    started = nodes.start_argv(host.command(argv) if host else argv)
    started.wait_for(r"^ready", timeout=60)
    return started


def summary(started: NodeProcess) -> dict[str, dict[str, float]]:
    started.stop(timeout=15)
    return json.loads(started.wait_for(r"^summary (.*)").group(1))  # type: ignore[no-any-return]


def tx_bytes(host: Host) -> int:
    return int(host.run(["cat", "/sys/class/net/eth0/statistics/tx_bytes"]).stdout)


@contextmanager
def processes() -> Iterator[Processes]:
    nodes = Processes()
    try:
        yield nodes
    finally:
        for node in nodes.started:
            node.send(signal.SIGTERM)
        for node in nodes.started:
            try:
                node.proc.wait(5)
            except Exception:  # noqa: BLE001 - killed below
                pass
        nodes.cleanup()


def uplink(net: Network, workers: Sequence[int] = (1, 4, 16), seconds: float = 4.0) -> list[dict[str, float]]:
    """Edge transmit bytes per second by number of remote workers, direct and through a relay."""
    edge, middle, far = (net.add_host(n) for n in ("edge", "relay", "workers"))
    rows: list[dict[str, float]] = []
    with processes() as nodes:
        capture(nodes, edge, f"tcp://0.0.0.0:{EDGE_PORT}")
        node = f"tcp://{edge.address}:{EDGE_PORT}"
        for mode in ("direct", "relay"):
            if mode == "relay":  # started only now: it is the edge's one subscriber
                relay(nodes, middle, f"tcp://0.0.0.0:{RELAY_PORT}", "--node", f"site1={node}")
            target = (node, "cam1") if mode == "direct" else (f"tcp://{middle.address}:{RELAY_PORT}", "site1/cam1")
            for count in workers:
                reader = probe(nodes, far, [target], "--copies", str(count))
                hold(1.0)  # connections settle (describe replies, first frames)
                reader.send(signal.SIGUSR1)  # frames counted from here on
                before = tx_bytes(edge)
                started = time.monotonic()
                hold(seconds)
                sent = tx_bytes(edge) - before
                elapsed = time.monotonic() - started
                frames = summary(reader)[" ".join(target)]["frames"]
                rows.append(
                    {
                        "mode": mode,
                        "workers": count,
                        "edge_bytes_per_s": sent / elapsed,
                        "fps_per_worker": frames / elapsed / count,
                    }
                )
    return rows


def hop(seconds: float = 5.0) -> dict[str, dict[str, float]]:
    """Frame age on loopback, directly and through a relay, read at the same time."""
    with processes() as nodes:
        node = capture(nodes, None, "tcp://127.0.0.1:*")
        control = node.wait_for(r"control endpoint (\S+)").group(1)
        relayed = relay(nodes, None, "tcp://127.0.0.1:*", "--node", f"site1={control}")
        relay_control = relayed.wait_for(r"control endpoint (\S+),").group(1)
        reader = probe(nodes, None, [(control, "cam1"), (relay_control, "site1/cam1")])
        hold(1.0)
        reader.send(signal.SIGUSR1)  # ages from here on
        hold(seconds)
        got = summary(reader)
    return {"direct": got[f"{control} cam1"], "relay": got[f"{relay_control} site1/cam1"]}


def cpu(cameras: int = 4, seconds: float = 8.0, windows: int = 3) -> dict[str, float]:
    """CPU seconds per second per camera: the relay (with one worker reading everything it
    relays) and one subscriber reading the same cameras directly, in the same windows; the
    ratio is the median of `windows` windows of `seconds / windows` each."""
    with processes() as nodes:
        controls = []
        for _ in range(cameras):
            node = capture(nodes, None, "tcp://127.0.0.1:*")
            controls.append(node.wait_for(r"control endpoint (\S+)").group(1))
        relay_args = [arg for i, c in enumerate(controls) for arg in ("--node", f"site{i}={c}")]
        relayed = relay(nodes, None, "tcp://127.0.0.1:*", *relay_args)
        relay_control = relayed.wait_for(r"control endpoint (\S+),").group(1)
        downstream = probe(nodes, None, [(relay_control, f"site{i}/cam1") for i in range(cameras)])
        subscriber = probe(nodes, None, [(c, "cam1") for c in controls])
        hold(1.0)
        pids = {"relay": relayed.proc.pid, "subscriber": subscriber.proc.pid}
        used = {name: 0.0 for name in pids}
        ratios = []
        started = time.monotonic()
        for _ in range(windows):
            before = {name: run_seconds(pid) for name, pid in pids.items()}
            hold(seconds / windows)
            window = {name: run_seconds(pid) - before[name] for name, pid in pids.items()}
            ratios.append(window["relay"] / window["subscriber"])
            used = {name: used[name] + window[name] for name in pids}
        elapsed = time.monotonic() - started
        frames = {name: summary(p) for name, p in (("relay", downstream), ("subscriber", subscriber))}
    per_camera = {f"{name}_cpu_per_camera": used[name] / elapsed / cameras for name in pids}
    return {
        **per_camera,
        "ratio": statistics.median(ratios),
        "ratios": [round(r, 3) for r in ratios],  # type: ignore[dict-item]
        "frames": sum(s["frames"] for s in frames["relay"].values()),
    }


def slow_link(net: Network, rate: str = "2mbit", seconds: float = 6.0) -> dict[str, dict[str, float]]:
    """The edge's uplink limited below the stream's ~4 Mbit/s: frame age at the worker."""
    edge, middle, far = (net.add_host(n) for n in ("edge", "relay", "worker"))
    edge.limit_rate(rate)
    node = f"tcp://{edge.address}:{EDGE_PORT}"
    results = {}
    with processes() as nodes:
        capture(nodes, edge, f"tcp://0.0.0.0:{EDGE_PORT}")
        for name, relay_args, probe_args in (
            ("direct", None, []),
            ("direct pull", None, ["--pull"]),
            ("relay", [], []),
            ("relay --pull", ["--pull"], []),
        ):
            started = None
            target = (node, "cam1")
            if relay_args is not None:
                started = relay(nodes, middle, f"tcp://0.0.0.0:{RELAY_PORT}", "--node", f"site1={node}", *relay_args)
                target = (f"tcp://{middle.address}:{RELAY_PORT}", "site1/cam1")
            reader = probe(nodes, far, [target], *probe_args)
            hold(2.0)  # queues fill to their steady state
            reader.send(signal.SIGUSR1)
            hold(seconds)
            results[name] = summary(reader)[" ".join(target)]
            if started is not None:
                started.stop(timeout=15)
    return results


DESCRIBE = (
    "import dataclasses, json, sys, zmq\n"
    "from framebus.worker_node.discovery import describe\n"
    "reply = describe(zmq.Context(), sys.argv[1], 5.0)\n"
    "print(json.dumps([dataclasses.asdict(c) for c in reply.cameras]))"
)


def behind_nat(net: Network, seconds: float = 3.0) -> dict[str, dict[str, object]]:
    """An edge that only connects out (capture-node --connect) to `relay --listen`; on a third
    host, a worker describes the relay, pulls the camera, and a pool member processes it."""
    edge, middle, far = (net.add_host(n) for n in ("edge", "relay", "m1"))
    listen_port = RELAY_PORT + 1000
    relay_control = f"tcp://{middle.address}:{RELAY_PORT}"
    with processes() as nodes:
        listener = [PY, "-m", "worker_node", "relay", "--control", f"tcp://0.0.0.0:{RELAY_PORT}", "--insecure"]
        listener += ["--listen", f"site3=tcp://0.0.0.0:{listen_port}"]
        started = nodes.start_argv(middle.command(listener))
        started.wait_for("control endpoint", timeout=30)
        outward = ["--connect", f"tcp://{middle.address}:{listen_port}"]
        capture(nodes, edge, "tcp://127.0.0.1:5555", *outward)
        down = [PY, "-m", "capture_node", "--control", "tcp://127.0.0.1:5600", "--camera-id", "gate", *outward]
        gate = nodes.start_argv(edge.command([*down, "--source", "rtsp://127.0.0.1:9/gate", "--insecure"]))
        gate.wait_for(r"camera gate: cannot open", timeout=30)
        started.wait_for(r"camera site3/cam1: relayed on", timeout=30)
        started.wait_for(r"camera site3/gate: relayed on", timeout=30)  # it has told only why it sends nothing
        hold(2.0)  # the relay measures the rate it receives
        described = json.loads(far.run([PY, "-c", DESCRIBE, relay_control]).stdout)
        infos = {c["camera"]: c for c in described}
        reader = probe(nodes, far, [(relay_control, "site3/cam1")], "--pull")
        reader.send(signal.SIGUSR1)
        hold(seconds)
        pulled = summary(reader)[f"{relay_control} site3/cam1"]
        member_argv = [PY, "-m", "worker_node", "process", "--node", relay_control, "--camera", "site3/cam1"]
        member_argv += ["--handler", "benchmarks.pool:work", "--pool", "faces", "--name", "m1"]
        nodes.start_argv(far.command(member_argv)).wait_for(r"subscribed to .* \(pull\)", 30)
        consumer = nodes.start_argv(
            far.command([PY, "-m", "tests.support.pool_probe", relay_control, "site3/cam1/faces", str(seconds)])
        )
        consumer.wait_for("probe: done", timeout=30 + seconds)
        results = [json.loads(line) for line in consumer.lines if line.startswith("{")]
    return {
        "describe": infos,
        "pull": pulled,
        "pool": {"results": len(results), "members": sorted({str(r["member"]).split("@")[0] for r in results})},
    }


def restart(tries: int = 3) -> list[dict[str, float]]:
    """A relay killed and started again: seconds from the kill, and from the relay being back
    (it answers describe), to its worker's next frame."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    control = f"tcp://127.0.0.1:{port}"
    gaps = []
    with processes() as nodes:
        node = capture(nodes, None, "tcp://127.0.0.1:*")
        edge = node.wait_for(r"control endpoint (\S+)").group(1)
        current = relay(nodes, None, control, "--node", f"site1={edge}")
        reader = nodes.start_argv([PY, "tests/support/age_probe.py", control, "site1/cam1", "--receiver"])
        reader.wait_for(r"^frame ", timeout=30)
        for _ in range(tries):
            current.stop(signal.SIGKILL)
            killed_ns = time.time_ns()
            mark = len(reader.lines)
            current = relay(nodes, None, control, "--node", f"site1={edge}")
            current.wait_for(r"control endpoint")  # it answers describe: it is back
            back_ns = time.time_ns()
            line = reader.wait_for(r"^frame \d+ \d+ (\d+)", timeout=10, start=mark)
            frame_ns = int(line.group(1))
            gaps.append(
                {"from_kill_s": (frame_ns - killed_ns) / 1e9, "from_back_s": max(0.0, (frame_ns - back_ns) / 1e9)}
            )
    return gaps


def markdown(results: dict[str, object]) -> str:
    lines = ["# Relay benchmark", "", "`python -m benchmarks.relay` (make bench-relay)", ""]
    lines += ["## Edge uplink", "", "| mode | workers | edge bytes/s | fps per worker |", "|---|---|---|---|"]
    for row in results["uplink"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {row['mode']} | {row['workers']} | {row['edge_bytes_per_s']:,.0f} | {row['fps_per_worker']:.1f} |"
        )
    lines += ["", "## Frame age, loopback (ms)", "", "| path | p50 | p99 |", "|---|---|---|"]
    for name, row in results["hop"].items():  # type: ignore[attr-defined]
        lines.append(f"| {name} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |")
    c = results["cpu"]
    lines += ["", "## CPU per camera (% of a core)", ""]
    lines.append(
        f"relay {100 * c['relay_cpu_per_camera']:.2f} %, one subscriber {100 * c['subscriber_cpu_per_camera']:.2f} %, "  # type: ignore[index]
        f"ratio {c['ratio']:.2f}"  # type: ignore[index]
    )
    lines += [
        "",
        "## Slow edge uplink (2 Mbit/s, stream ~4 Mbit/s), frame age (ms)",
        "",
        "| path | p50 | p99 | frames |",
    ]
    lines.append("|---|---|---|---|")
    for name, row in results["slow_link"].items():  # type: ignore[attr-defined]
        lines.append(f"| {name} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {row['frames']} |")
    lines += [
        "",
        "## Relay restart (SIGKILL): seconds to the worker's next frame",
        "",
        "| from the kill | from the relay answering again |",
    ]
    lines.append("|---|---|")
    for gap in results["restart"]:  # type: ignore[attr-defined]
        lines.append(f"| {gap['from_kill_s']:.2f} | {gap['from_back_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="each measurement window")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    results: dict[str, object] = {}
    with Network() as net:
        results["uplink"] = uplink(net, seconds=args.seconds)
    results["hop"] = hop(args.seconds)
    results["cpu"] = cpu(seconds=args.seconds)
    with Network() as net:
        results["slow_link"] = slow_link(net, seconds=args.seconds)
    results["restart"] = restart()
    text = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, content in (("relay.json", json.dumps(results, indent=2)), ("relay.md", text)):
        (args.out / name).write_text(content)
    print(text)


if __name__ == "__main__":
    main()
