"""`make soak`: every system streaming side by side for a long time; memory of every process.

    .venv/bin/python -m benchmarks.soak [--minutes 30] [--out bench-results] [--systems framebus]

framebus runs its real capture node with two RemoteCapture consumers (a fast one that takes
every frame as JPEG bytes, and a slow one that decodes and works 100 ms per frame), a save
worker (`--every 1s --keep-files 200`) and a web viewer with one MJPEG client; each peer runs
its sender with a slow consumer (where a backlog, and so memory, can grow). RSS of every
process (the capture node's camera process too) is sampled from /proc throughout.

Each process's growth is a slope in MB per hour: the Theil-Sen estimate (the median of the
slopes between every pair of samples: a few outliers, such as one frame buffer more in flight
at one sample, cannot move it) over the second half of the run, when start-up allocations and
caches have settled. A framebus process fails above 1 MB/h in a run of 20 min or more (a
shorter run cannot tell so small a slope from noise: its bound is wider, bound_for). Writes
OUT/soak.json and OUT/soak.md; `make bench` picks soak.json up for its goal table. Exit status
1 when a framebus process is above its bound, after one line per such process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report
from benchmarks.consumer import KEEP_LAST_ENV
from benchmarks.measure import MachineSample, Records, cpu_seconds, process_name
from benchmarks.processes import REPO, Helper, HelperError
from benchmarks.scenarios import expand
from benchmarks.source_clip import FPS, make_clip
from benchmarks.systems import LABELS, SYSTEMS, Deployment, deploy, free_port

log = logging.getLogger("soak")
WARM_UP_S = 10.0
SLOPE_BOUND = 1.0  # MB per hour (0.7 GB a month), for a run of BOUND_FULL_MINUTES or more
BOUND_FULL_MINUTES = 20.0
READY_S = 60.0


def _label(system: str, role: str, pid: int, mode: str) -> str:
    cmd = process_name(pid)
    if "resource_tracker" in cmd:
        return f"{system} {role}: multiprocessing resource tracker"
    if "multiprocessing" in cmd and system == "framebus":
        return "framebus capture node: camera process"
    if system == "framebus" and role == "sender":
        return "framebus capture node"
    if system == "stack" and role == "broker":
        return "stack: Manager server process"
    if system == "stack" and role == "other":
        return "stack: main process (starts the others)"
    if role == "save":
        return "framebus save worker (--every 1s --keep-files 200)"
    if role == "web":
        return "framebus web viewer (1 MJPEG client)"
    return f"{system} {role}" + (f" ({mode})" if role == "consumer" else "")


def robust_slope(t_s: np.ndarray, mb: np.ndarray) -> float:
    """Theil-Sen: the median of the slopes between every pair of samples, in MB per hour."""
    i, j = np.triu_indices(len(t_s), k=1)
    dt = t_s[j] - t_s[i]
    keep = dt > 0
    if not keep.any():
        return 0.0
    return float(np.median((mb[j] - mb[i])[keep] / dt[keep]) * 3600)


def bound_for(minutes: float) -> float:
    """SLOPE_BOUND from BOUND_FULL_MINUTES on. A shorter run fits a shorter window, where the
    same few hundred kB of allocator noise make a steeper slope: its bound grows in proportion
    (2 min: 10 MB/h, a smoke test only)."""
    return SLOPE_BOUND * max(1.0, BOUND_FULL_MINUTES / max(minutes, 0.1))


def _summary(samples: list[tuple[float, int, int]], bound: float) -> dict[str, Any]:
    """Start and end as medians of the first and last 3 samples (MB), max, and the slopes of
    RSS and of its anonymous part (heap, not file pages) over the second half."""
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples]) / 2**20
    anon = np.array([s[2] for s in samples]) / 2**20
    start, end = float(np.median(mb[:3])), float(np.median(mb[-3:]))
    half = t >= t[-1] / 2
    slope = robust_slope(t[half], mb[half]) if half.sum() >= 3 else 0.0
    return {
        "rss_start_mb": round(start, 1),
        "rss_end_mb": round(end, 1),
        "rss_max_mb": round(float(mb.max()), 1),
        "slope_mb_per_hour": round(slope, 2),
        "anon_slope_mb_per_hour": round(robust_slope(t[half], anon[half]) if half.sum() >= 3 else 0.0, 2),
        "bound_mb_per_hour": round(bound, 2),
        "flat": slope <= bound,
    }


def memory(pid: int) -> tuple[int, int]:
    """VmRSS and RssAnon of a process, bytes."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                found[key] = int(value.split()[0]) * 1024
    return found.get("VmRSS", 0), found.get("RssAnon", 0)


def _worker_node(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "worker-node"
    return [
        str(script) if script.exists() else sys.executable,
        *([] if script.exists() else ["-m", "worker_node"]),
        *args,
    ]


def _until(what: str, check: Any, timeout: float = READY_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise HelperError(f"{what} within {timeout:.0f} s (see its log)")
        time.sleep(0.2)  # a poll with a deadline


def _mjpeg_client(url: str, stop: threading.Event) -> None:
    """One browser on the viewer: reads its stream as fast as it comes, reconnecting if cut."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                while not stop.is_set() and response.read(64 * 1024):
                    pass
        except OSError:
            stop.wait(1.0)


def _start_workers(control: str, work: Path, stop: threading.Event) -> list[Helper]:
    """The save worker and the web viewer of the issue's soak, on the framebus node; the web
    viewer gets one MJPEG client (a thread here, so that its cost is not counted)."""
    saved = work / "saved"
    saved.mkdir(parents=True, exist_ok=True)
    for old in saved.glob("*.jpg"):
        old.unlink()
    port = free_port()
    save = Helper(
        "framebus-save",
        _worker_node("save", "--node", control, "--out", str(saved), "--every", "1s", "--keep-files", "200"),
        work,
    )
    web = Helper("framebus-web", _worker_node("web", "--node", control, "--listen", f"127.0.0.1:{port}"), work)
    helpers = [save, web]
    try:
        _until("the save worker saved no file", lambda: any(saved.glob("*.jpg")))

        def has_frame() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as r:
                    return any(c.get("seq") is not None for c in json.loads(r.read())["cameras"])
            except OSError:
                return False

        _until("the web viewer showed no frame", has_frame)
    except BaseException:
        for helper in helpers:
            helper.stop(5.0)
        raise
    threading.Thread(
        target=_mjpeg_client, args=(f"http://127.0.0.1:{port}/cameras/cam1.mjpg", stop), name="mjpeg", daemon=True
    ).start()
    return helpers


def soak(minutes: float, out: Path, systems: list[str], interval_s: float) -> dict[str, Any]:
    work = out / "soak-work"
    clip = make_clip(out / "media")
    os.environ[KEEP_LAST_ENV] = str(int(10 * FPS))  # the helpers inherit it: bounded logs
    deployments: list[Deployment] = []
    workers: list[Helper] = []
    stop_client = threading.Event()
    try:
        for system in systems:
            log.info("starting %s", system)
            if system == "framebus":
                deployments.append(deploy(system, clip.path, "slow", 2, work, modes=["fast", "slow"]))
                control = deployments[-1].senders[0].control  # type: ignore[union-attr]
                workers = _start_workers(control, work, stop_client)
                deployments[-1].pids["save"] = [workers[0].pid]
                deployments[-1].pids["web"] = [workers[1].pid]
            else:
                deployments.append(deploy(system, clip.path, "slow", 1, work))
        time.sleep(WARM_UP_S)  # start-up allocations are not a leak: part of the measurement design
        roles = {d.system: expand(d.pids) for d in deployments}
        consumer_modes = {
            pid: m for d in deployments for pid, m in zip(d.pids.get("consumer", []), d.modes, strict=False)
        }
        names = {
            pid: _label(system, role, pid, consumer_modes.get(pid, ""))
            for system, by_role in roles.items()
            for role, pids in by_role.items()
            for pid in pids
        }
        samples: dict[tuple[str, str, int], list[tuple[float, int, int]]] = {}
        cpu0 = {pid: cpu_seconds(pid) for r in roles.values() for ps in r.values() for pid in ps}
        machine0, started = MachineSample.take(), time.monotonic()
        end = started + minutes * 60
        log.info("soaking for %.1f min, a memory sample every %.0f s", minutes, interval_s)
        while True:
            now = time.monotonic()
            for system, by_role in roles.items():
                for role, pids in by_role.items():
                    for pid in pids:
                        try:
                            samples.setdefault((system, role, pid), []).append((now - started, *memory(pid)))
                        except OSError:
                            pass  # it died: its samples stop, which the table shows
            if now >= end:
                break
            time.sleep(min(interval_s, max(0.0, end - now)))  # the sampling interval
        elapsed = time.monotonic() - started
        cpu1 = {pid: cpu_seconds(pid) for pid in cpu0 if Path(f"/proc/{pid}").exists()}
        busy = MachineSample.take().busy_percent_since(machine0)
    finally:
        stop_client.set()
        for helper in workers:
            helper.stop()
        for d in deployments:
            d.stop()
    bound = bound_for(elapsed / 60)
    processes = []
    for (system, role, pid), series in samples.items():
        processes.append(
            {
                "system": system,
                "role": role,
                "name": names[pid],
                "pid": pid,
                "cpu_percent": round(100 * (cpu1.get(pid, cpu0[pid]) - cpu0[pid]) / elapsed, 1),
                "samples": len(series),
                **_summary(series, bound),
                "rss_mb_series": [[round(t, 1), round(rss / 2**20, 2)] for t, rss, _ in series],
            }
        )
    ages = {}
    for d in deployments:
        for i, path in enumerate(d.records):
            if path.exists():
                rec = Records.from_json(json.loads(path.read_text()))
                last = (
                    rec.received_between(int(rec.recv_ns[-1]) - 10_000_000_000, int(rec.recv_ns[-1]) + 1)
                    if len(rec)
                    else rec
                )
                key = f"{d.system} consumer ({d.modes[i]})"
                ages[key] = round(float(np.median(last.ages_ms())), 1) if len(last) else None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": f"make soak SOAK_MINUTES={minutes:g}"
        + ("" if set(systems) == set(SYSTEMS) else f' SOAK_ARGS="--systems {",".join(systems)}"'),
        "minutes": round(elapsed / 60, 1),
        "systems": ", ".join(systems),
        "machine_busy_percent": round(busy, 1),
        "processes": processes,
        "age_ms_over_last_10_s": ages,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"`{result['command']}`, {result['date']}: {result['minutes']} min, {result.get('systems', 'all systems')} "
        f"(machine {result['machine_busy_percent']} % busy). RSS per process, MB; slopes over the second "
        "half (Theil-Sen), of RSS and of its anonymous part (heap):",
        "",
        "| process | start | end | max | slope MB/h | anon slope MB/h | bound MB/h | CPU % | flat |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["processes"]:
        lines.append(
            f"| {p['name']} | {p['rss_start_mb']} | {p['rss_end_mb']} | {p['rss_max_mb']} | "
            f"{p['slope_mb_per_hour']:+.2f} | {p['anon_slope_mb_per_hour']:+.2f} | {p['bound_mb_per_hour']:g} | "
            f"{p['cpu_percent']} | {'yes' if p['flat'] else '**no**'} |"
        )
    ages = ", ".join(f"{k} {v} ms" for k, v in result["age_ms_over_last_10_s"].items())
    lines += ["", f"Frame age over the last 10 s: {ages}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="benchmarks.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--out", type=Path, default=REPO / "bench-results")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {', '.join(LABELS)}")
    p.add_argument(
        "--interval", type=float, help="seconds between memory samples (default: 240 samples, 5 to 30 s apart)"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    interval = args.interval or max(5.0, min(30.0, args.minutes * 60 / 240))
    args.out.mkdir(parents=True, exist_ok=True)
    result = soak(args.minutes, args.out, [s for s in args.systems.split(",") if s], interval)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "soak.md").write_text(markdown(result))
    print(markdown(result))
    bench = args.out / "results.json"
    if bench.exists():  # the latest `make bench` gets this soak's verdict in its goal table
        results = json.loads(bench.read_text())
        results["goals"] = report.goals(results, result)
        bench.write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "results.md").write_text(report.markdown(results))
    ours = [p for p in result["processes"] if p["system"] == "framebus"]
    for p in ours:
        if not p["flat"]:
            log.error(
                "FAIL %s (pid %d): RSS grows %+.2f MB/h, above the bound of %g MB/h",
                p["name"],
                p["pid"],
                p["slope_mb_per_hour"],
                p["bound_mb_per_hour"],
            )
    flat = bool(ours) and all(p["flat"] for p in ours)
    log.info("framebus memory %s", "flat" if flat else "NOT flat")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
