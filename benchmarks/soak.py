"""`make soak`: every system streaming side by side for a long time; memory of every process.

    .venv/bin/python -m benchmarks.soak [--minutes 30] [--out bench-results]

framebus runs its real capture node with two RemoteCapture consumers (a fast one that takes
every frame as JPEG bytes, and a slow one that decodes and works 100 ms per frame); each peer
runs its sender with a slow consumer (where a backlog, and so memory, can grow). RSS of every
process (the capture node's camera process too) is sampled from /proc throughout; a process
is flat when it ends within 5 % and 10 MB of where it started. Writes OUT/soak.json and
OUT/soak.md; `make bench` picks soak.json up for its goal table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report
from benchmarks.consumer import KEEP_LAST_ENV
from benchmarks.measure import MachineSample, Records, cpu_seconds, process_name, rss_bytes
from benchmarks.processes import REPO
from benchmarks.scenarios import expand
from benchmarks.source_clip import FPS, make_clip
from benchmarks.systems import LABELS, SYSTEMS, Deployment, deploy

log = logging.getLogger("soak")
WARM_UP_S = 10.0
FLAT_PERCENT = 5.0
FLAT_MB = 10.0


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
    return f"{system} {role}" + (f" ({mode})" if role == "consumer" else "")


def _summary(samples: list[tuple[float, int]]) -> dict[str, Any]:
    """Start and end as medians of the first and last 3 samples (MB), max, and the slope."""
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples]) / 2**20
    start, end = float(np.median(mb[:3])), float(np.median(mb[-3:]))
    slope = float(np.polyfit(t / 3600, mb, 1)[0]) if len(samples) >= 3 and np.ptp(t) > 0 else 0.0
    grew = end - start
    return {
        "rss_start_mb": round(start, 1),
        "rss_end_mb": round(end, 1),
        "rss_max_mb": round(float(mb.max()), 1),
        "slope_mb_per_hour": round(slope, 1),
        "flat": grew < FLAT_MB and grew < start * FLAT_PERCENT / 100,
    }


def soak(minutes: float, out: Path, systems: list[str], interval_s: float) -> dict[str, Any]:
    work = out / "soak-work"
    clip = make_clip(out / "media")
    os.environ[KEEP_LAST_ENV] = str(int(10 * FPS))  # the helpers inherit it: bounded logs
    deployments: list[Deployment] = []
    try:
        for system in systems:
            log.info("starting %s", system)
            if system == "framebus":
                deployments.append(deploy(system, clip.path, "slow", 2, work, modes=["fast", "slow"]))
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
        samples: dict[tuple[str, str, int], list[tuple[float, int]]] = {}
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
                            samples.setdefault((system, role, pid), []).append((now - started, rss_bytes(pid)))
                        except OSError:
                            pass  # it died: its samples stop, which the table shows
            if now >= end:
                break
            time.sleep(min(interval_s, max(0.0, end - now)))  # the sampling interval
        elapsed = time.monotonic() - started
        cpu1 = {pid: cpu_seconds(pid) for pid in cpu0 if Path(f"/proc/{pid}").exists()}
        busy = MachineSample.take().busy_percent_since(machine0)
    finally:
        for d in deployments:
            d.stop()
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
                **_summary(series),
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
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": f"make soak SOAK_MINUTES={minutes:g}",
        "minutes": round(elapsed / 60, 1),
        "machine_busy_percent": round(busy, 1),
        "processes": processes,
        "age_ms_over_last_10_s": ages,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"`{result['command']}`, {result['date']}: {result['minutes']} min, all systems side by side "
        f"(machine {result['machine_busy_percent']} % busy). RSS per process, MB:",
        "",
        "| process | start | end | max | slope MB/h | CPU % | flat |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in result["processes"]:
        lines.append(
            f"| {p['name']} | {p['rss_start_mb']} | {p['rss_end_mb']} | {p['rss_max_mb']} | "
            f"{p['slope_mb_per_hour']} | {p['cpu_percent']} | {'yes' if p['flat'] else '**no**'} |"
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
    p.add_argument("--interval", type=float, help="seconds between memory samples (default: minutes, min 5 s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    interval = args.interval or max(5.0, min(60.0, args.minutes * 60 / 60))
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
    flat = [p["flat"] for p in result["processes"] if p["system"] == "framebus"]
    log.info("framebus memory %s", "flat" if flat and all(flat) else "NOT flat")
    return 0 if flat and all(flat) else 1


if __name__ == "__main__":
    sys.exit(main())
