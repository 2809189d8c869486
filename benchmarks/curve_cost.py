"""What CURVE encryption costs: capture node CPU (node + camera processes) at 720p30 with 4
subscriber processes, plaintext vs CURVE, and what decryption costs the subscribers.

    .venv/bin/python -m benchmarks.curve_cost [--rounds 3] [--seconds 15]

The two configurations alternate (plain, curve, plain, curve, ...) so drift in machine load
hits both alike; figures are medians over rounds. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

from benchmarks.measure import cpu_seconds, process_tree
from framebus.common.keys import allow_key, generate_key_pair, load_key_pair, load_public_key
from framebus.common.protocol import decode
from framebus.common.security import CurveClient
from framebus.common.sockets import StreamOptions, connect_frame_subscriber

FPS = 30.0
SUBSCRIBERS = 4


def start_node(curve: tuple[Path, Path] | None) -> tuple[subprocess.Popen[str], str]:
    """A capture node on the 720p30 test picture, optionally with CURVE (secret key, allow dir)."""
    argv = [sys.executable, "-m", "capture_node", "--control", "tcp://127.0.0.1:*"]
    argv += ["--width", "1280", "--height", "720", "--fps", str(int(FPS))]
    if curve:
        argv += ["--key", str(curve[0]), "--allow", str(curve[1])]
    node = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    assert node.stderr is not None
    endpoint, seen = "", []
    for line in node.stderr:
        seen.append(line)
        if m := re.search(r"frames on (\S+)", line):
            endpoint = m.group(1)
        if "streaming" in line:
            break
    if not endpoint:
        node.kill()
        sys.exit("capture node did not start:\n" + "".join(seen))
    # Keep draining stderr so a chatty node never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in node.stderr or ()], daemon=True).start()
    return node, endpoint


def subscriber(endpoint: str, worker_secret: str, node_public: str) -> None:
    """Child: count frames; print "ready" after the first, and the count at each stdin line."""
    security = None
    if worker_secret:
        security = CurveClient(load_key_pair(Path(worker_secret)), load_public_key(Path(node_public)))
    ctx = zmq.Context()
    sock = connect_frame_subscriber(ctx, endpoint, StreamOptions(), security)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    count = 0
    while True:
        events = dict(poller.poll(None if count else 15_000))
        if not events:
            sys.exit("subscriber: no frame in 15 s")
        if sock in events:
            decode(sock.recv(copy=False).buffer)
            count += 1
            if count == 1:
                print("ready", flush=True)
        if sys.stdin.fileno() in events:
            if not sys.stdin.readline():
                return
            print(count, flush=True)


def run_config(curve: bool, keys: Path, seconds: float) -> dict[str, float | list[float]]:
    """One window: node tree CPU %, subscribers' CPU %, fps of each subscriber."""
    node, endpoint = start_node((keys / "node.key_secret", keys / "allow") if curve else None)
    secret, public = (str(keys / "worker.key_secret"), str(keys / "node.key")) if curve else ("", "")
    subs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.curve_cost", "--subscriber", endpoint, secret, public],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(SUBSCRIBERS)
    ]
    try:
        for s in subs:  # each has received a frame: connected (and, with CURVE, handshaken)
            if s.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                sys.exit(f"a subscriber exited before its first frame ({'curve' if curve else 'plain'})")

        def mark() -> list[int]:
            for s in subs:
                s.stdin.write("\n")  # type: ignore[union-attr]
                s.stdin.flush()  # type: ignore[union-attr]
            return [int(s.stdout.readline()) for s in subs]  # type: ignore[union-attr]

        tree = process_tree(node.pid)
        sub_pids = [s.pid for s in subs]
        n0, m0 = mark(), time.monotonic()
        t0, c0, s0 = time.monotonic(), sum(map(cpu_seconds, tree)), sum(map(cpu_seconds, sub_pids))
        time.sleep(seconds)
        t1, c1, s1 = time.monotonic(), sum(map(cpu_seconds, tree)), sum(map(cpu_seconds, sub_pids))
        n1, m1 = mark(), time.monotonic()
        if set(process_tree(node.pid)) != set(tree):
            print("warning: the node's process tree changed during the window", file=sys.stderr)
    finally:
        for s in subs:
            s.stdin.close()  # type: ignore[union-attr]
            s.wait(5)
        node.terminate()
        node.wait()
    fps = [(b - a) / (m1 - m0) for a, b in zip(n0, n1, strict=True)]
    if min(fps) < 0.9 * FPS:
        sys.exit(f"a subscriber got too few frames ({'curve' if curve else 'plain'}): fps {fps}")
    return {
        "node_cpu": 100 * (c1 - c0) / (t1 - t0),
        "subs_cpu": 100 * (s1 - s0) / (t1 - t0),
        "fps": [round(f, 1) for f in fps],
    }


def make_keys(directory: Path) -> None:
    """Node and worker key pairs; the worker is in the node's allow-list."""
    generate_key_pair(directory, "node")
    worker_public, _ = generate_key_pair(directory, "worker")
    (directory / "allow").mkdir()
    allow_key(directory / "allow", load_public_key(worker_public), "worker")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--subscriber", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        subscriber(*args.subscriber)
        return
    runs: dict[str, list[dict[str, float | list[float]]]] = {"plain": [], "curve": []}
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        make_keys(keys)
        print(f"{'round':>5} {'config':>6} {'node CPU %':>11} {'subs CPU %':>11}  fps per subscriber")
        for r in range(1, args.rounds + 1):
            for name in ("plain", "curve"):
                res = run_config(name == "curve", keys, args.seconds)
                runs[name].append(res)
                fps = " ".join(f"{f:.1f}" for f in res["fps"])  # type: ignore[union-attr]
                print(f"{r:>5} {name:>6} {res['node_cpu']:>11.1f} {res['subs_cpu']:>11.1f}  {fps}", flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(float(run[key]) for run in runs[name])  # type: ignore[arg-type]

    def delivered(name: str) -> float:  # frames per second summed over subscribers, median
        return statistics.median(sum(run["fps"]) for run in runs[name])  # type: ignore[arg-type]

    plain, curve = median("plain", "node_cpu"), median("curve", "node_cpu")
    sub_plain, sub_curve = median("plain", "subs_cpu"), median("curve", "subs_cpu")
    frames = delivered("curve")
    added_ms = 10 * (curve - plain) / frames  # (% of a core / 100) s/s * 1000 ms / frames/s
    added_sub_ms = 10 * (sub_curve - sub_plain) / frames
    print()
    print(f"{'median':<28} {'plain':>8} {'curve':>8} {'ratio':>7}")
    print(f"{'node tree CPU % of a core':<28} {plain:>8.1f} {curve:>8.1f} {curve / plain:>7.2f}")
    print(f"{'4 subscribers CPU % (sum)':<28} {sub_plain:>8.1f} {sub_curve:>8.1f} {sub_curve / sub_plain:>7.2f}")
    print(f"{'frames/s delivered (sum)':<28} {delivered('plain'):>8.1f} {frames:>8.1f}")
    print(f"CURVE adds {added_ms:.2f} ms node CPU and {added_sub_ms:.2f} ms subscriber CPU per frame per subscriber")
    result = {
        "machine_cores": os.cpu_count(),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "subscribers": SUBSCRIBERS,
        "node_cpu_percent": {"plain": round(plain, 1), "curve": round(curve, 1)},
        "node_cpu_ratio": round(curve / plain, 2),
        "node_added_ms_per_frame_per_subscriber": round(added_ms, 3),
        "subscribers_cpu_percent": {"plain": round(sub_plain, 1), "curve": round(sub_curve, 1)},
        "subscriber_added_ms_per_frame": round(added_sub_ms, 3),
        "runs": runs,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
