"""`make bench-cameras`: how many 720p30 H.264 cameras one capture node carries at full rate.

    python -m benchmarks.cameras [--counts 4,8,12,16] [--seconds 15] [--sources rtsp,file]

For each N: one RTSP server (tests/support/rtsp_server.py) sends a pre-encoded 720p30 H.264 clip (no
encoder in the server) to N mounts; one capture node reads all N (a [[camera]] table each);
one subscriber per camera (a SUB socket each, in one process that only counts) takes every
frame. The same with the clip as a looped file (`source = "clip.mp4"`, paced at 30 fps).

Reported per run: fps received per camera (min / median), capture CPU (the node's process tree:
utime + stime, so a loaded machine shows as lost fps, not as a wrong CPU figure), that CPU per
published frame ÷ the decode + encode floor per frame, the RTSP server's CPU, PSS per camera process, and how busy the whole
machine was (other work included). The floor is measured in its own process: the source opened
as the capture node opens it (capture_node.sources), read and JPEG-encoded at quality 80 in one
thread, CPU seconds per frame.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.measure import MachineSample, cpu_seconds, process_tree
from benchmarks.processes import REPO, Helper, HelperError
from benchmarks.source_clip import FPS, HEIGHT, QUALITY, WIDTH, render_frames

SYSTEM_PYTHON = "/usr/bin/python3"  # GStreamer's Python bindings come from Debian packages
RTSP_SERVER = REPO / "tests" / "support" / "rtsp_server.py"
SETTLE_S = 2.0
CAPTURED = "framebus_frames_captured_total{"


# ---------------------------------------------------------------------------- the clip


def make_camera_clip(directory: Path, seconds: float = 10.0) -> tuple[Path, Path]:
    """The benchmark clip as an IP camera sends it (H.264, no B-frames, a keyframe every 30
    frames, headers repeated), once as Annex-B for the RTSP server and once as MP4 for files."""
    directory.mkdir(parents=True, exist_ok=True)
    raw, mp4 = directory / "camera.h264", directory / "camera.mp4"
    command = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24"]
    command += ["-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryfast"]
    command += ["-crf", "20", "-g", "30", "-bf", "0", "-x264-params", "repeat-headers=1", "-pix_fmt", "yuv420p"]
    command += ["-an", "-f", "h264", str(raw)]
    encoder = subprocess.Popen(command, stdin=subprocess.PIPE)
    assert encoder.stdin is not None
    for image in render_frames(int(seconds * FPS)):
        encoder.stdin.write(image.tobytes())
    encoder.stdin.close()
    if encoder.wait() != 0:
        raise RuntimeError(f"ffmpeg failed to write {raw}")
    remux = ["ffmpeg", "-loglevel", "error", "-y", "-r", str(FPS), "-f", "h264", "-i", str(raw), "-c", "copy", str(mp4)]
    subprocess.run(remux, check=True)
    return raw, mp4


# ---------------------------------------------------------------------------- helper roles


def floor(source: str, seconds: float) -> dict[str, float]:
    """Decode + encode alone, in this process: the source opened as the node opens it."""
    from framebus.capture_node.config import CameraConfig
    from framebus.capture_node.sources import open_source
    from framebus.common import jpeg

    src = open_source(CameraConfig(id="floor", source=source, read_timeout=10.0))
    interval = 1.0 / (src.info.fps or FPS) if src.info.paced else 0.0
    try:
        for _ in range(15):  # warm up
            _read(src)
        frames, size, next_read = 0, 0, time.monotonic()
        cpu0, wall0 = time.process_time(), time.monotonic()
        while time.monotonic() - wall0 < seconds:
            if interval:
                time.sleep(max(0.0, next_read - time.monotonic()))  # pacing a file at 30 fps
                next_read = max(next_read + interval, time.monotonic() - interval)
            size += len(jpeg.encode_bgr(_read(src), QUALITY))
            frames += 1
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - wall0
    finally:
        src.close()
    return {
        "frames": frames,
        "fps": round(frames / wall, 1),
        "ms_per_frame": round(1000 * cpu / frames, 3),
        "jpeg_kb": round(size / frames / 1000, 1),
    }


def _read(src: Any) -> Any:
    image = src.read()
    if image is None and src.rewind():
        image = src.read()
    if image is None:
        raise RuntimeError("the floor's source gave no frame")
    return image


def subscribe(endpoints: list[str], seconds: float) -> None:
    """One SUB socket per camera. Waits until every camera delivered a frame, settles, then
    counts frames per camera over the window and prints the result (JSON lines)."""
    import zmq

    from framebus.common.protocol import Frame, decode

    ctx = zmq.Context()
    sockets = []
    for endpoint in endpoints:
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(endpoint)
        sockets.append(sock)
    poller = zmq.Poller()
    for sock in sockets:
        poller.register(sock, zmq.POLLIN)
    counts = [0] * len(sockets)
    sizes = [0] * len(sockets)
    index = {sock: i for i, sock in enumerate(sockets)}

    def drain(until: float) -> None:
        while time.monotonic() < until:
            for sock, _ in poller.poll(100):
                message = sock.recv(copy=False)
                if isinstance(decode(message.buffer), Frame):
                    counts[index[sock]] += 1
                    sizes[index[sock]] += len(message.buffer)

    deadline = time.monotonic() + 60
    while min(counts) == 0 and time.monotonic() < deadline:
        drain(time.monotonic() + 0.5)
    if min(counts) == 0:
        _emit({"error": f"{counts.count(0)} cameras delivered no frame in 60 s"})
        return
    drain(time.monotonic() + SETTLE_S)
    counts[:] = [0] * len(sockets)
    sizes[:] = [0] * len(sockets)
    _emit({"window_start": time.time()})
    start = time.monotonic()
    drain(start + seconds)
    took = time.monotonic() - start
    _emit(
        {
            "fps": [round(c / took, 2) for c in counts],
            "mbit_s": [round(8 * s / took / 1e6, 2) for s in sizes],
            "window_end": time.time(),
        }
    )
    for sock in sockets:
        sock.close(0)
    ctx.term()


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------- the orchestrator


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split between the processes that map them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in process_tree(pid):
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


@contextmanager
def rtsp_server(clip: Path, mounts: int, log_dir: Path) -> Iterator[tuple[list[str], subprocess.Popen[str]]]:
    argv = [SYSTEM_PYTHON, str(RTSP_SERVER), "--source", "h264-file", "--file", str(clip)]
    argv += ["--mounts", str(mounts), "--path", "/cam", "--width", str(WIDTH), "--height", str(HEIGHT)]
    log = open(log_dir / f"rtsp-server-{mounts}.log", "w")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY "):
            raise HelperError(f"the RTSP server did not start (see {log.name})")
        first = line.split()[1]
        base = first[: -len("0")] if mounts > 1 else first
        yield ([f"{base}{i}" for i in range(mounts)] if mounts > 1 else [first]), proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class CaptureNode:
    """The real `capture-node --config` with one [[camera]] per source."""

    def __init__(self, sources: list[str], work: Path, name: str, extra: str = "") -> None:
        self.metrics_port = _free_port()
        config = work / f"{name}.toml"
        lines = ['[node]\ncontrol = "tcp://127.0.0.1:*"\n']
        for i, source in enumerate(sources):
            lines.append(f'[[camera]]\nid = "cam{i}"\nsource = "{source}"\nquality = {QUALITY}\n')
            if "://" not in source:
                lines.append("loop = true\n")
            lines.append(extra)
        config.write_text("".join(lines))
        self._log = open(work / f"{name}.log", "w")
        command = [sys.executable, "-m", "capture_node", "--config", str(config), "--log-level", "INFO"]
        command += ["--metrics-port", str(self.metrics_port)]
        self.proc = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
        self.endpoints: dict[str, str] = {}
        self._expected = len(sources)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._log.write(line)
            if m := re.search(r"camera (\S+): source .*, frames on (\S+) ", line):
                self.endpoints[m.group(1)] = m.group(2)
                if len(self.endpoints) == self._expected:
                    self._ready.set()
        self._ready.set()

    def wait_endpoints(self, timeout: float = 120.0) -> list[str]:
        if not self._ready.wait(timeout) or len(self.endpoints) < self._expected:
            raise HelperError(f"capture-node did not start its {self._expected} cameras (see its log)")
        return [self.endpoints[f"cam{i}"] for i in range(self._expected)]

    def decoded(self) -> float:
        """Frames the cameras read from their sources so far (published or not)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(CAPTURED))

    def camera_pids(self) -> list[int]:
        """The camera processes (named `framebus-camera ID`), not the helpers beside them."""
        return [p for p in process_tree(self.proc.pid) if _title(p).startswith("framebus-camera ")]

    def other_pids(self) -> list[int]:
        """The node itself and its helpers: the forkserver, multiprocessing's resource tracker."""
        cameras = set(self.camera_pids())
        return [p for p in process_tree(self.proc.pid) if p not in cameras]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(2)
        self._log.close()


def measure_floor(source: str, seconds: float, log_dir: Path, name: str) -> dict[str, float]:
    helper = Helper(
        name, [sys.executable, "-m", "benchmarks.cameras", "floor", source, "--seconds", str(seconds)], log_dir
    )
    try:
        result: dict[str, float] = helper.wait_for("floor", timeout=seconds + 60)
    finally:
        helper.stop()
    return result


def run_once(
    kind: str, sources: list[str], seconds: float, work: Path, floor_ms: float, server_pid: int | None, extra: str = ""
) -> dict[str, Any]:
    n = len(sources)
    node = CaptureNode(sources, work, f"node-{kind}-{n}", extra)
    sub: Helper | None = None
    try:
        endpoints = node.wait_endpoints()
        argv = [sys.executable, "-m", "benchmarks.cameras", "subscribe", "--seconds", str(seconds), *endpoints]
        sub = Helper(f"subscribers-{kind}-{n}", argv, work)
        sub.wait_for("window_start", timeout=90)
        decoded0 = node.decoded()
        cpu0, srv0, mach0, t0 = tree_cpu(node.proc.pid), _cpu(server_pid), MachineSample.take(), time.monotonic()
        load0 = os.getloadavg()[0]
        result = sub.wait_for("fps", timeout=seconds + 30)
        cpu1, srv1, mach1, t1 = tree_cpu(node.proc.pid), _cpu(server_pid), MachineSample.take(), time.monotonic()
        decoded = node.decoded() - decoded0
        mbit = sub.events.get("mbit_s", [])
        pss = [pss_kb(p) for p in node.camera_pids()]
        node_pss = sum(pss_kb(p) for p in node.other_pids())
    finally:
        if sub is not None:
            sub.stop()
        node.stop()
    fps: list[float] = result
    wall = t1 - t0
    capture_percent = 100 * (cpu1 - cpu0) / wall
    delivered = sum(fps) * wall  # the subscribers keep up: what they got is what was published
    return {
        "source": kind,
        "cameras": n,
        "fps_min": min(fps),
        "fps_median": round(statistics.median(fps), 1),
        "full_rate": min(fps) >= 0.95 * FPS,
        "capture_cpu_percent": round(capture_percent, 1),
        "capture_cpu_per_camera_percent": round(capture_percent / n, 1),
        "decoded_fps_per_camera": round(decoded / wall / n, 1),
        "capture_ms_per_frame": round(1000 * (cpu1 - cpu0) / delivered, 2),
        # Per frame decoded: a starved node still decodes every frame of an RTSP stream (it
        # must drain it) but publishes fewer; per published frame would count that as overhead.
        "capture_ms_per_decoded_frame": round(1000 * (cpu1 - cpu0) / max(decoded, 1), 2),
        "capture_over_floor": round(1000 * (cpu1 - cpu0) / max(decoded, 1) / floor_ms, 2),
        "rtsp_server_cpu_percent": round(100 * (srv1 - srv0) / wall, 1) if server_pid else None,
        "machine_busy_percent": round(mach1.busy_percent_since(mach0), 1),
        "load_average_1min": round(max(load0, os.getloadavg()[0]), 2),
        "pss_per_camera_mb": round(statistics.median(pss) / 1024, 1) if pss else None,
        "node_pss_mb": round(node_pss / 1024, 1),  # the node's process and its helpers
        "mbit_s_per_camera": round(statistics.median(mbit), 1) if mbit else None,
        "fps": fps,
    }


def idle_cpu(kind: str, sources: list[str], seconds: float, work: Path, extra: str = "") -> dict[str, float]:
    """The same node with no subscriber at all: what reading costs when nothing is encoded."""
    n = len(sources)
    node = CaptureNode(sources, work, f"node-{kind}-{n}-idle", extra)
    try:
        node.wait_endpoints()
        deadline = time.monotonic() + 60
        while node.decoded() < 30 * n and time.monotonic() < deadline:
            time.sleep(0.5)  # polling the node's metrics until every camera reads
        time.sleep(SETTLE_S)
        decoded0, cpu0, t0 = node.decoded(), tree_cpu(node.proc.pid), time.monotonic()
        time.sleep(seconds)  # the measured window
        decoded1, cpu1, t1 = node.decoded(), tree_cpu(node.proc.pid), time.monotonic()
    finally:
        node.stop()
    return {
        "idle_capture_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "idle_decoded_fps_per_camera": round((decoded1 - decoded0) / (t1 - t0) / n, 1),
        "idle_ms_per_decoded_frame": round(1000 * (cpu1 - cpu0) / max(1.0, decoded1 - decoded0), 2),
    }


def _cpu(pid: int | None) -> float:
    return tree_cpu(pid) if pid else 0.0


def markdown(results: dict[str, Any]) -> str:
    out = [
        f"Floor (decode + JPEG encode at quality {QUALITY}, one thread, CPU per frame): "
        + ", ".join(
            f"{k} {v['ms_per_frame']} ms ({v['ms_per_frame'] * FPS / 10:.1f} % of a core at 30 fps)"
            for k, v in results["floor"].items()
        ),
        "",
        "| source | cameras | fps per camera (min / median) | capture CPU (% of one core) | per camera | ms per published / decoded frame (decoded fps) | ÷ floor (per decoded frame) | RTSP server CPU | PSS per camera (node + helpers) | machine busy (2 cores, all work) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        server = f"{r['rtsp_server_cpu_percent']} %" if r["rtsp_server_cpu_percent"] is not None else "-"
        out.append(
            f"| {r['source']} | {r['cameras']} | {r['fps_min']} / {r['fps_median']} | {r['capture_cpu_percent']} "
            f"| {r['capture_cpu_per_camera_percent']} | {r['capture_ms_per_frame']} / {r['capture_ms_per_decoded_frame']} ({r['decoded_fps_per_camera']}) | {r['capture_over_floor']} | {server} "
            f"| {r['pss_per_camera_mb']} MB ({r['node_pss_mb']} MB) | {r['machine_busy_percent']} % (load {r['load_average_1min']}) |"
        )
    idle = [r for r in results["runs"] if "idle_capture_cpu_percent" in r]
    if idle:
        out += [
            "",
            "| source | cameras | capture CPU, a subscriber per camera | no subscriber (nothing encoded) | ms per decoded frame: watched / idle |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {r['source']} | {r['cameras']} | {r['capture_cpu_percent']} | {r['idle_capture_cpu_percent']} "
            f"| {r['capture_ms_per_decoded_frame']} / {r['idle_ms_per_decoded_frame']} |"
            for r in idle
        ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.cameras", description=__doc__)
    sub = p.add_subparsers(dest="role")
    fl = sub.add_parser("floor", help="decode + encode alone (a helper)")
    fl.add_argument("source")
    fl.add_argument("--seconds", type=float, default=10.0)
    su = sub.add_parser("subscribe", help="one subscriber per camera (a helper)")
    su.add_argument("--seconds", type=float, default=15.0)
    su.add_argument("endpoints", nargs="+")
    p.add_argument("--counts", default="4,8,12,16")
    p.add_argument("--sources", default="rtsp,file")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--floor-seconds", type=float, default=10.0)
    p.add_argument("--idle", action="store_true", help="also measure each node with no subscriber")
    p.add_argument("--camera-extra", default="", help="TOML lines added to every [[camera]] (e.g. 'width = 640')")
    p.add_argument("--out", type=Path, default=REPO / "bench-results")
    args = p.parse_args(argv)
    if args.role == "floor":
        _emit({"floor": floor(args.source, args.seconds)})
        return 0
    if args.role == "subscribe":
        subscribe(args.endpoints, args.seconds)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the finally blocks stop the helpers
    counts = [int(c) for c in args.counts.split(",")]
    kinds = args.sources.split(",")
    work = args.out / "work" / "cameras"
    work.mkdir(parents=True, exist_ok=True)
    raw, mp4 = make_camera_clip(work)
    extra = args.camera_extra.replace("\\n", "\n") + ("\n" if args.camera_extra else "")
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "floor": {}, "runs": []}
    results["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    results["camera_extra"] = args.camera_extra
    if "rtsp" in kinds:
        with rtsp_server(raw, 1, work) as (urls, _):
            results["floor"]["rtsp"] = measure_floor(urls[0], args.floor_seconds, work, "floor-rtsp")
    if "file" in kinds:
        results["floor"]["file"] = measure_floor(str(mp4), args.floor_seconds, work, "floor-file")
    print(json.dumps(results["floor"]), flush=True)
    for n in counts:
        for kind in kinds:
            floor_ms = results["floor"][kind]["ms_per_frame"]
            if kind == "rtsp":
                with rtsp_server(raw, n, work) as (urls, server):
                    run = run_once(kind, urls, args.seconds, work, floor_ms, server.pid, extra)
                    if args.idle:
                        run.update(idle_cpu(kind, urls, args.seconds, work, extra))
            else:
                run = run_once(kind, [str(mp4)] * n, args.seconds, work, floor_ms, None, extra)
                if args.idle:
                    run.update(idle_cpu(kind, [str(mp4)] * n, args.seconds, work, extra))
            results["runs"].append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "fps"}), flush=True)
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    (args.out / "cameras.json").write_text(json.dumps(results, indent=2))
    (args.out / "cameras.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
