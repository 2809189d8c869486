"""Find where a worker's memory goes, in minutes instead of hours.

    python -m benchmarks.leak_probe save [--cameras 6] [--fps 100] [--minutes 5] [--every 0.02]
    python -m benchmarks.leak_probe web  [--cameras 6] [--fps 100] [--minutes 5] [--clients 1]

A fake node (its own process: the real ControlServer and frame sockets, pre-encoded test
pictures, no camera or encoder cost) streams many cameras fast; the worker's real command
(`worker-node save` or `web`, cli.main) runs in this process under tracemalloc, the web one
with MJPEG clients reading its streams. Every --interval seconds one line: RSS, the Python
heap tracemalloc sees, glibc's malloc statistics (mallinfo2: bytes in use and free in its
arenas, and in mmap'd blocks), and the allocation sites that grew most since the warm-up. RSS
growing while the traced heap and malloc's in-use bytes stay flat is fragmentation (free bytes
malloc keeps), not a leak; the traced heap growing names its lines.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import tracemalloc
from multiprocessing import get_context
from pathlib import Path

import cv2

from benchmarks.measure import rss_bytes


def malloc_arenas() -> list[tuple[float, float]]:
    """glibc's arenas (0: the main thread's; the others: other threads', such as libzmq's I/O
    thread), each as (MB obtained from the system, MB of it free), from malloc_info()."""
    import xml.etree.ElementTree as ET

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    except (OSError, AttributeError):
        return []
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        stream = libc.fopen(f.name.encode(), b"w")
        if not stream:
            return []
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        root = ET.fromstring(Path(f.name).read_text())
    out = []
    for heap in root.iter("heap"):
        free = sum(int(t.get("size", 0)) for t in heap.findall("total") if t.get("type") in ("fast", "rest"))
        system = next((int(s.get("size", 0)) for s in heap.findall("system") if s.get("type") == "current"), 0)
        out.append((system / 2**20, free / 2**20))
    return out


def anonymous_mappings() -> dict[str, int]:
    """Resident kB of each anonymous mapping (by start address) of this process: a glibc arena
    is one 64 MiB-aligned mapping, a pymalloc arena a 1 MiB one, a thread stack 8 MiB."""
    out, current = {}, ""
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                named = len(head) > 5 and head[5].startswith("[")  # [heap] (the main arena), [stack]
                current = head[5] if named else head[0].split("-")[0] if len(head) == 5 else ""
            elif current and head[0] == "Rss:":
                out[current] = int(head[1])
    return out


def pymalloc_arenas() -> int:
    """Python's small-object arenas (1 MiB each in 3.11) held now: sys._debugmallocstats()
    writes them to the C stderr, read back here through a temporary file."""
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        for line in f.read().decode(errors="replace").splitlines():
            if line.startswith("# arenas allocated current"):
                return int(line.split("=")[1].replace(",", ""))
    return -1


def _pictures(count: int, width: int, height: int) -> list[bytes]:
    from framebus.capture_node.pattern import TestPattern

    pattern = TestPattern("probe", width, height)
    return [bytes(cv2.imencode(".jpg", pattern.render(i * 7), [cv2.IMWRITE_JPEG_QUALITY, 80])[1]) for i in range(count)]


def fake_node(cameras: int, fps: float, width: int, height: int, ready: socket.socket) -> None:
    """A node with `cameras` conflated streams at `fps` each; sends its control endpoint on `ready`."""
    import zmq

    from framebus.common.control import ControlServer
    from framebus.common.protocol import CameraInfo, FrameHeader, encode_frame
    from framebus.common.publisher import FramePublisher
    from framebus.common.sockets import StreamOptions

    pictures = _pictures(12, width, height)
    ctx = zmq.Context()
    pubs = [FramePublisher(ctx, "tcp://127.0.0.1:*", StreamOptions()) for _ in range(cameras)]
    ids = [f"probe{i}" for i in range(cameras)]

    def describe() -> list[CameraInfo]:
        return [
            CameraInfo(cam, pub.endpoint, width, height, fps, "streaming", "latest", published_fps=fps)
            for cam, pub in zip(ids, pubs, strict=True)
        ]

    control = ControlServer(ctx, "tcp://127.0.0.1:*", "probe-node", describe)
    control.start()
    ready.sendall(control.endpoint.encode() + b"\n")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    seq, next_at = 0, time.monotonic()
    while not stop.is_set():
        now_ns = time.time_ns()
        for cam, pub in zip(ids, pubs, strict=True):
            header = FrameHeader(cam, seq, now_ns, now_ns, width, height)
            pub.send(encode_frame(header, pictures[seq % len(pictures)]), stop)
        seq += 1
        next_at += 1 / fps
        time.sleep(max(0.0, next_at - time.monotonic()))  # pacing the fake camera
    control.stop()
    for pub in pubs:
        pub.close()
    ctx.destroy(0)


def mjpeg_client(url: str, stop: threading.Event) -> None:
    """Reads a stream as a browser would, as fast as it can, until stopped."""
    import urllib.request

    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                while not stop.is_set() and response.read(64 * 1024):
                    pass
        except OSError:
            stop.wait(0.2)  # the viewer has not described the camera yet: ask again


class Sampler:
    """Periodic lines: RSS, traced heap, malloc statistics, and the sites that grew."""

    def __init__(self, interval: float, warm_up: float, top: int, depth: int) -> None:
        self.interval, self.warm_up, self.top, self.depth = interval, warm_up, top, depth
        self.baseline: tracemalloc.Snapshot | None = None
        self.started = time.monotonic()
        self.rows: list[tuple[float, float, float, dict[str, float]]] = []
        self.mappings: dict[str, int] | None = None

    def _snapshot(self) -> tracemalloc.Snapshot:
        return tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, "<frozen importlib._bootstrap*"),
            )
        )

    def sample(self) -> None:
        t = time.monotonic() - self.started
        rss = rss_bytes(os.getpid()) / 2**20
        traced = tracemalloc.get_traced_memory()[0] / 2**20
        arenas = malloc_arenas()
        heap = {"in_use": sum(a[0] - a[1] for a in arenas), "free": sum(a[1] for a in arenas)}
        self.rows.append((t, rss, traced, heap))
        heap_text = ", ".join(f"{i}: {a[0]:.2f} ({a[1]:.2f} free)" for i, a in enumerate(arenas))
        print(
            f"[{t:6.0f} s] rss {rss:.1f} MB, traced {traced:.2f} MB, pymalloc arenas {pymalloc_arenas()}, "
            f"malloc arenas MB: {heap_text}",
            file=sys.stderr,
            flush=True,
        )
        mappings = anonymous_mappings()
        if self.mappings is None:
            if t >= self.warm_up:
                self.mappings = mappings
        else:
            grown = sorted(((kb - self.mappings.get(m, 0), m) for m, kb in mappings.items()), reverse=True)
            text = ", ".join(f"{m} {d:+d} kB" for d, m in grown[:4] if d > 0)
            print(f"    anonymous mappings grown since the warm-up: {text or 'none'}", file=sys.stderr, flush=True)
        if not tracemalloc.is_tracing():
            return
        if self.baseline is None:
            if t >= self.warm_up:
                self.baseline = self._snapshot()
            return
        for stat in self._snapshot().compare_to(self.baseline, "traceback")[: self.top]:
            if stat.size_diff <= 0:
                continue
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(stat.traceback))
            print(
                f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {where}",
                file=sys.stderr,
                flush=True,
            )

    def slopes(self) -> str:
        """MB per hour after the warm-up: RSS, traced, malloc in use."""
        import numpy as np

        rows = [r for r in self.rows if r[0] >= self.warm_up]
        if len(rows) < 3:
            return "too short for a slope"
        t = np.array([r[0] for r in rows]) / 3600
        out = []
        for name, values in (
            ("rss", [r[1] for r in rows]),
            ("traced", [r[2] for r in rows]),
            ("malloc in use", [r[3].get("in_use", 0.0) for r in rows]),
            ("malloc free", [r[3].get("free", 0.0) for r in rows]),
        ):
            out.append(f"{name} {np.polyfit(t, np.array(values), 1)[0]:+.2f} MB/h")
        return ", ".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="benchmarks.leak_probe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("worker", choices=["save", "web"])
    p.add_argument("--cameras", type=int, default=6)
    p.add_argument("--fps", type=float, default=100.0, help="per camera")
    p.add_argument("--size", default="1280x720")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--interval", type=float, default=20.0, help="seconds between samples")
    p.add_argument("--warm-up", type=float, default=30.0, help="seconds before the baseline snapshot")
    p.add_argument("--every", default="0.02s", help="save: --every of the save worker")
    p.add_argument("--keep-files", default="200", help="save: --keep-files")
    p.add_argument("--clients", type=int, default=1, help="web: MJPEG clients (on the first cameras)")
    p.add_argument("--depth", type=int, default=6, help="traceback frames kept per allocation")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--rediscover", type=float, help="seconds between describe rounds (the worker's: 2)")
    p.add_argument("--no-trace", action="store_true", help="RSS and malloc only (tracemalloc costs CPU)")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))

    mp = get_context("spawn")
    ours, theirs = socket.socketpair()
    node = mp.Process(target=fake_node, args=(args.cameras, args.fps, width, height, theirs), daemon=True)
    node.start()
    control = ours.makefile().readline().strip()
    print(
        f"fake node on {control}: {args.cameras} cameras at {args.fps:g} fps, {args.size}", file=sys.stderr, flush=True
    )

    from framebus.worker_node import cli, receiver

    if args.rediscover:
        receiver.REDISCOVER_S = args.rediscover

    if not args.no_trace:
        tracemalloc.start(args.depth)
    sampler = Sampler(args.interval, args.warm_up, args.top, args.depth)
    stop = threading.Event()
    clients: list[threading.Thread] = []
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as out:
        if args.worker == "save":
            command = ["save", "--node", control, "--out", out, "--every", args.every]
            command += ["--keep-files", args.keep_files, "--status-interval", "1s"]
        else:
            with socket.socket() as s:  # a free port for the viewer
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            command = ["web", "--node", control, "--listen", f"127.0.0.1:{port}"]
            for i in range(args.clients):
                url = f"http://127.0.0.1:{port}/cameras/probe{i % args.cameras}.mjpg"
                clients.append(threading.Thread(target=mjpeg_client, args=(url, stop), daemon=True))
                clients[-1].start()

        def sample_until_done() -> None:
            end = time.monotonic() + args.minutes * 60
            while not stop.wait(min(args.interval, max(0.0, end - time.monotonic()))):
                sampler.sample()
                if time.monotonic() >= end:
                    break
            # What malloc holds free (fragmentation) goes back to the system; live memory stays.
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            print("after malloc_trim(0):", file=sys.stderr, flush=True)
            sampler.sample()
            stop.set()
            os.kill(os.getpid(), signal.SIGTERM)  # ends the worker's command as a user's Ctrl-C would

        threading.Thread(target=sample_until_done, daemon=True).start()
        real_stdout = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # the save worker's status lines
        try:
            cli.main(["--log-level", "WARNING", *command])
        finally:
            os.dup2(real_stdout, 1)
            os.close(devnull)
            stop.set()
            if node.pid is not None:
                os.kill(node.pid, signal.SIGTERM)
            node.join(5)
    print(f"after warm-up: {sampler.slopes()}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
