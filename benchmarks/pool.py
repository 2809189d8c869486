"""`make bench-pool`: a worker pool against one worker, members on hosts of their own.

    python -m benchmarks.pool [--window 8] [--out bench-results]     # root: network namespaces

One 1280x720 30 fps camera (the capture node's test pattern) on an edge host; 1, 2, then 3
`worker-node process --pool faces` members, each on a host of its own, running a 100 ms handler
(`work` below); a consumer on another host reads the pool's one stream, `door/faces`, as it
would read a camera. Then one member is killed with SIGKILL. Measured per phase:

- camera fps: how fast the camera's `seq` went up (the node's own rate: a machine loaded by other
  work starves it, and then no pool can process 29 fps); a window in which it fell below 29.1 fps
  is measured again, up to 3 windows (`windows`);
- processed fps: frames the members' handlers ran on, per second (each member's handler logs the
  seq of every frame it gets; their union is what the pool processed);
- duplicates: frames handled by more than one member (must be 0);
- published fps and age p50/p99 at the consumer: now - the source frame's capture time;
- after the kill: the longest gap in the pool's stream, and the survivors' rate in the first
  second against before.

Then (`--scenario many`; both by default) fairness across cameras: 2 edges of 4 cameras each
(640x360, 10 fps on one and 20 fps on the other), a relay in front of both, 4 members over all 8
cameras through the relay, each process on a host of its own. Measured per camera: its fps, the
frames the pool processed of it per second, and their age when the handler got them; for the
pool, duplicates and how far the camera furthest from the median rate is from it.

Writes bench-results/pool.{json,md} and pool-fair.{json,md}. tests/test_pool_hosts.py runs the
same measurements, shorter, and asserts the issue's figures with margins.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.netns import Host, Network  # noqa: E402
from tests.support.processes import NodeProcess, Processes, hold, wait_until  # noqa: E402

HANDLER_S = 0.100
FPS = 30
SIZE = (1280, 720)
CAMERA, POOL = "door", "faces"
SEQ_LOG = "FRAMEBUS_POOL_SEQ_LOG"  # where `work` notes the seq of each frame it gets
PY = sys.executable
STARVED = 0.97  # a window whose camera made less than this share of FPS is measured again


def work(image: Any, header: Any) -> dict[str, int]:
    """The benchmark's handler: 100 ms of work (a sleep: the members' CPU is not what is
    measured), and a note of which frame it got, for counting duplicates across members."""
    path = os.environ.get(SEQ_LOG)
    if path:
        age_ms = (time.time_ns() - header.capture_ns) / 1e6  # hosts are namespaces: one clock
        with open(path, "a") as out:
            out.write(f"{time.monotonic():.6f} {header.seq} {header.camera} {age_ms:.1f}\n")
    time.sleep(HANDLER_S)
    return {"seq": int(header.seq)}


@dataclass
class Phase:
    members: int
    camera_fps: float  # frames the camera produced (seq advance): other load on the machine can starve it
    processed_fps: float
    published_fps: float
    duplicates: int
    age_p50_ms: float
    age_p99_ms: float
    results: int
    windows: int = 1  # measured: a window in which other load starved the camera is measured again
    ages_ms: list[float] = field(default_factory=list, repr=False)  # of each result, at the consumer


@dataclass
class Kill:
    survivors: int
    before_fps: float  # the survivors' processed fps before the kill
    first_second_fps: float  # theirs in the first second after it
    second_second_fps: float  # and in the second: "recovered within 1 s" means this is their share
    longest_gap_ms: float  # in the pool's stream, across the kill


def handled(log_dir: Path) -> dict[str, list[tuple[float, int]]]:
    """member -> [(monotonic time, seq)] of every frame its handler got."""
    out: dict[str, list[tuple[float, int]]] = {}
    for path in sorted(log_dir.glob("*.seq")):
        rows = []
        for line in path.read_text().splitlines():
            t, seq = line.split()[:2]
            rows.append((float(t), int(seq)))
        out[path.stem] = rows
    return out


def published(probe: NodeProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in list(probe.lines) if line.startswith("{")]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def phase(members: int, start: float, end: float, log_dir: Path, probe: NodeProcess) -> Phase:
    timed = sorted((t, seq) for rows in handled(log_dir).values() for t, seq in rows if start <= t < end)
    frames = [seq for _, seq in timed]
    counts = Counter(frames)
    span = timed[-1][0] - timed[0][0] if len(timed) > 1 else 0.0
    out = [r for r in published(probe) if start <= r["t"] < end]
    ages = [r["age_ms"] for r in out]
    return Phase(
        members=members,
        camera_fps=round((max(frames) - min(frames)) / span, 1) if span else 0.0,
        processed_fps=round(len(counts) / (end - start), 2),
        published_fps=round(len(out) / (end - start), 2),
        duplicates=sum(n - 1 for n in counts.values()),
        age_p50_ms=round(percentile(ages, 0.5), 1),
        age_p99_ms=round(percentile(ages, 0.99), 1),
        results=len(out),
        ages_ms=ages,
    )


class Bench:
    """The hosts and processes of one run; `run()` measures every phase."""

    def __init__(self, net: Network, nodes: Processes, log_dir: Path) -> None:
        self.nodes = nodes
        self.log_dir = log_dir
        self.edge = net.add_host("edge")
        self.viewer = net.add_host("viewer")
        self.member_hosts = [net.add_host(f"m{i}") for i in range(1, 4)]
        self.control = f"tcp://{self.edge.address}:5555"
        self.members: list[NodeProcess] = []
        self.probe: NodeProcess | None = None

    def start_node(self) -> None:
        width, height = SIZE
        argv = [PY, "-m", "capture_node", "--control", "tcp://0.0.0.0:5555", "--insecure", "--camera-id", CAMERA]
        argv += ["--width", str(width), "--height", str(height), "--fps", str(FPS)]
        node = self.nodes.start_argv(self.edge.command(argv))
        node.wait_for(r"camera \S+: streaming", 30)

    def add_member(self, host: Host) -> NodeProcess:
        name = host.name
        env_log = f"{SEQ_LOG}={self.log_dir / f'{name}.seq'}"
        argv = ["env", env_log, PY, "-m", "worker_node", "process", "--node", self.control, "--camera", CAMERA]
        argv += ["--handler", "benchmarks.pool:work", "--pool", POOL, "--name", name]
        member = self.nodes.start_argv(host.command(argv))
        member.wait_for(r"subscribed to .* \(pull\)", 30)
        self.members.append(member)
        return member

    def start_probe(self) -> NodeProcess:
        argv = [PY, "-m", "tests.support.pool_probe", self.control, f"{CAMERA}/{POOL}", "3600"]
        probe = self.probe = self.nodes.start_argv(self.viewer.command(argv))
        probe.wait_for("probe: reading", 30)
        return probe

    def run(self, window: float, settle: float = 2.0, attempts: int = 3) -> tuple[list[Phase], Kill]:
        """Each phase is measured until the camera kept its rate through a window (at most
        `attempts` windows): on a shared machine, other work now and then takes the CPU the
        camera needs, and such a window measures that work, not the pool."""
        self.start_node()
        probe = self.start_probe()
        phases = []
        for i, host in enumerate(self.member_hosts):
            self.add_member(host)
            probe.wait_for(rf'"member": "{host.name}@', 30)  # its results reach the consumer
            hold(settle)  # past the new process's start (imports, first decodes: CPU the others lack)
            for attempt in range(1, attempts + 1):
                start = time.monotonic()
                hold(window)  # the measurement window
                measured = phase(i + 1, start, time.monotonic(), self.log_dir, probe)
                measured.windows = attempt
                if measured.camera_fps >= STARVED * FPS:
                    break
            phases.append(measured)
        return phases, self.kill_one(window)

    def kill_one(self, window: float) -> Kill:
        assert self.probe is not None
        victim = self.members[-1]
        survivors = [h.name for h in self.member_hosts[: len(self.members) - 1]]
        before_end = time.monotonic()
        victim.proc.kill()  # SIGKILL: no goodbye; its connection closes with the process
        killed = time.monotonic()
        hold(max(2.0, window / 2))
        rows = handled(self.log_dir)

        def rate(start: float, end: float) -> float:
            return sum(1 for m in survivors for t, _ in rows.get(m, []) if start <= t < end) / (end - start)

        times = sorted(r["t"] for r in published(self.probe) if killed - 2.0 <= r["t"] < killed + 2.0)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        return Kill(
            survivors=len(survivors),
            before_fps=round(rate(before_end - window, before_end), 2),
            first_second_fps=round(rate(killed, killed + 1.0), 2),
            second_second_fps=round(rate(killed + 1.0, killed + 2.0), 2),
            longest_gap_ms=round(max(gaps) * 1000, 1) if gaps else float("inf"),
        )


BenchKind = TypeVar("BenchKind", "Bench", "FairBench")


@contextmanager
def on_hosts(kind: type[BenchKind], log_dir: Path) -> Iterator[BenchKind]:
    """A bench's hosts and processes, all gone on exit (also when a measurement fails)."""
    nodes = Processes()
    try:
        with Network() as net:
            yield kind(net, nodes, log_dir)
    finally:
        nodes.cleanup()


def bench(log_dir: Path) -> AbstractContextManager[Bench]:
    return on_hosts(Bench, log_dir)


# ---------------------------------------------------------------------- many cameras: fairness

NODE_FPS = (10, 20)  # each edge's cameras: the pool must share its work equally, not by frame rate
CAMERAS_PER_NODE = 4
FAIR_SIZE = (640, 360)
FAIR_MEMBERS = 4


@dataclass
class CameraShare:
    camera: str
    camera_fps: float  # frames the camera produced (seq advance)
    processed_fps: float
    age_p50_ms: float  # when the handler got the frame, from its capture
    age_p99_ms: float


@dataclass
class Fairness:
    members: int
    cameras: list[CameraShare]
    processed_fps: float  # the pool's, all cameras together
    duplicates: int  # frames (camera, seq) handled by more than one member
    spread: float  # the largest |rate / median rate - 1| over the cameras: 0 is perfectly fair
    windows: int = 1


def handled_frames(log_dir: Path, start: float, end: float) -> list[tuple[float, str, int, float]]:
    """(time, camera, seq, age ms) of every frame a member's handler got in [start, end)."""
    rows = []
    for path in sorted(log_dir.glob("*.seq")):
        for line in path.read_text().splitlines():
            t, seq, camera, age = line.split()
            if start <= float(t) < end:
                rows.append((float(t), camera, int(seq), float(age)))
    return rows


def fairness(members: int, cameras: list[str], start: float, end: float, log_dir: Path) -> Fairness:
    rows = handled_frames(log_dir, start, end)
    counts = Counter((camera, seq) for _, camera, seq, _ in rows)
    shares = []
    for camera in cameras:
        mine = sorted((t, seq, age) for t, c, seq, age in rows if c == camera)
        span = mine[-1][0] - mine[0][0] if len(mine) > 1 else 0.0
        ages = [age for _, _, age in mine]
        shares.append(
            CameraShare(
                camera=camera,
                camera_fps=round((mine[-1][1] - mine[0][1]) / span, 1) if span else 0.0,
                processed_fps=round(len({seq for _, seq, _ in mine}) / (end - start), 2),
                age_p50_ms=round(percentile(ages, 0.5), 1),
                age_p99_ms=round(percentile(ages, 0.99), 1),
            )
        )
    rates = sorted(s.processed_fps for s in shares)
    median = (rates[len(rates) // 2] + rates[(len(rates) - 1) // 2]) / 2
    return Fairness(
        members=members,
        cameras=shares,
        processed_fps=round(len(counts) / (end - start), 2),
        duplicates=sum(n - 1 for n in counts.values()),
        spread=round(max(abs(r / median - 1) for r in rates), 3) if median else float("inf"),
    )


def node_config(fps: float) -> str:
    width, height = FAIR_SIZE
    text = '[node]\ncontrol = "tcp://0.0.0.0:5555"\n'
    for i in range(CAMERAS_PER_NODE):
        text += f'\n[[camera]]\nid = "c{i}"\nsource = "test"\nwidth = {width}\nheight = {height}\nfps = {fps}\n'
    return text


class FairBench:
    """2 edges of 4 cameras each, one relay in front of both, a pool of 4 members over all 8
    cameras through the relay, every process on a host of its own."""

    def __init__(self, net: Network, nodes: Processes, log_dir: Path) -> None:
        self.nodes = nodes
        self.log_dir = log_dir
        self.edges = [net.add_host(f"edge{i}") for i in range(1, len(NODE_FPS) + 1)]
        self.relay = net.add_host("relay")
        self.member_hosts = [net.add_host(f"m{i}") for i in range(1, FAIR_MEMBERS + 1)]
        self.cameras = [f"site{n}/c{i}" for n in range(1, len(NODE_FPS) + 1) for i in range(CAMERAS_PER_NODE)]
        self.expected_fps = {f"site{n}/c{i}": fps for n, fps in enumerate(NODE_FPS, 1) for i in range(CAMERAS_PER_NODE)}

    def start(self) -> None:
        sites = []
        for n, (host, fps) in enumerate(zip(self.edges, NODE_FPS, strict=True), start=1):
            config = self.log_dir / f"{host.name}.toml"
            config.write_text(node_config(fps))
            node = self.nodes.start_argv(
                host.command([PY, "-m", "capture_node", "--config", str(config), "--insecure"])
            )
            for i in range(CAMERAS_PER_NODE):
                node.wait_for(rf"camera c{i}: streaming", 30)
            sites += ["--node", f"site{n}=tcp://{host.address}:5555"]
        argv = [PY, "-m", "worker_node", "relay", "--control", "tcp://0.0.0.0:5555", "--insecure", *sites]
        relay = self.nodes.start_argv(self.relay.command(argv))
        for camera in self.cameras:
            relay.wait_for(rf"camera {camera}: relayed on", 30)
        cameras = [arg for camera in self.cameras for arg in ("--camera", camera)]
        for host in self.member_hosts:
            env_log = f"{SEQ_LOG}={self.log_dir / f'{host.name}.seq'}"
            argv = ["env", env_log, PY, "-m", "worker_node", "process", "--node", f"tcp://{self.relay.address}:5555"]
            argv += [*cameras, "--handler", "benchmarks.pool:work", "--pool", POOL, "--name", host.name]
            self.nodes.start_argv(host.command(argv))

    def every_camera_handled(self) -> bool:
        seen = {camera for _, camera, _, _ in handled_frames(self.log_dir, 0.0, float("inf"))}
        members = {path.stem for path in self.log_dir.glob("*.seq") if path.stat().st_size}
        return seen >= set(self.cameras) and len(members) == FAIR_MEMBERS

    def run(self, window: float, settle: float = 2.0, attempts: int = 3) -> Fairness:
        """Measured once every member handles frames and every camera was handled, until the
        cameras kept their rates through a window (at most `attempts` windows)."""
        self.start()
        wait_until(self.every_camera_handled, 90, "every member handling frames of every camera")
        hold(settle)
        for attempt in range(1, attempts + 1):
            start = time.monotonic()
            hold(window)  # the measurement window
            measured = fairness(FAIR_MEMBERS, self.cameras, start, time.monotonic(), self.log_dir)
            measured.windows = attempt
            if all(s.camera_fps >= STARVED * self.expected_fps[s.camera] for s in measured.cameras):
                break
        return measured


def fair_bench(log_dir: Path) -> AbstractContextManager[FairBench]:
    return on_hosts(FairBench, log_dir)


def fair_markdown(f: Fairness, command: str) -> str:
    lines = [
        f"{len(f.cameras)} cameras ({FAIR_SIZE[0]}x{FAIR_SIZE[1]}; {CAMERAS_PER_NODE} at "
        + " fps and ".join(f"{fps}" for fps in NODE_FPS)
        + f" fps on {len(NODE_FPS)} edges) through one relay, a pool of {f.members} members over all of them, "
        f"a {HANDLER_S * 1000:.0f} ms handler, every process on a host of its own; `{command}`:",
        "",
        "| camera | camera fps | processed fps | age p50 / p99 (ms) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {s.camera} | {s.camera_fps} | {s.processed_fps} | {s.age_p50_ms} / {s.age_p99_ms} |" for s in f.cameras
    ]
    lines += [
        "",
        f"The pool processed {f.processed_fps} fps, {f.duplicates} duplicates; the furthest camera from the median "
        f"rate: {f.spread * 100:.1f} % ({f.windows} window{'s' if f.windows > 1 else ''}).",
    ]
    return "\n".join(lines) + "\n"


def markdown(phases: list[Phase], kill: Kill, command: str) -> str:
    lines = [
        f"One {SIZE[0]}x{SIZE[1]} {FPS} fps camera, a {HANDLER_S * 1000:.0f} ms handler, members on hosts of "
        f"their own (network namespaces); `{command}`:",
        "",
        "| members | camera fps | processed fps | published fps | duplicates | age p50 / p99 (ms) | windows |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        lines.append(
            f"| {p.members} | {p.camera_fps} | {p.processed_fps} | {p.published_fps} | {p.duplicates} | {p.age_p50_ms} / {p.age_p99_ms} | {p.windows} |"
        )
    lines += [
        "",
        f"`kill -9` of one of 3 members: the {kill.survivors} survivors processed {kill.before_fps} fps before, "
        f"{kill.first_second_fps} fps in the first second after and {kill.second_second_fps} in the next; longest gap in the pool's stream "
        f"across the kill: {kill.longest_gap_ms} ms.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=8.0, help="seconds measured per phase (default 8)")
    parser.add_argument(
        "--scenario", choices=("one", "many", "both"), default="both",
        help="one camera and 1-3 members, 8 cameras and 4 members (fairness), or both (default)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.pool" + (f" --window {args.window:g}" if args.window != 8.0 else "")
    if args.scenario in ("one", "both"):
        one_camera(args.out, args.window, command)
    if args.scenario in ("many", "both"):
        many_cameras(args.out, args.window, command + " --scenario many")


def fresh_log_dir(out: Path, name: str) -> Path:
    log_dir = out / name
    log_dir.mkdir(exist_ok=True)
    for old in log_dir.glob("*.seq"):
        old.unlink()
    return log_dir


def one_camera(out: Path, window: float, command: str) -> None:
    with bench(fresh_log_dir(out, "pool-seqs")) as b:
        phases, kill = b.run(window)
    (out / "pool.json").write_text(
        json.dumps(
            {"phases": [{k: v for k, v in asdict(p).items() if k != "ages_ms"} for p in phases], "kill": asdict(kill)},
            indent=1,
        )
    )
    text = markdown(phases, kill, command)
    (out / "pool.md").write_text(text)
    print(text)
    single = phases[0].processed_fps
    print(f"pool of 3 vs one worker: {phases[-1].processed_fps / single:.2f}x" if single else "")


def many_cameras(out: Path, window: float, command: str) -> None:
    with fair_bench(fresh_log_dir(out, "pool-fair-seqs")) as b:
        measured = b.run(window)
    (out / "pool-fair.json").write_text(json.dumps(asdict(measured), indent=1))
    text = fair_markdown(measured, command)
    (out / "pool-fair.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
