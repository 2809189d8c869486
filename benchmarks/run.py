"""`make bench`: every scenario, framebus and its peers side by side, in one run on this machine.

    .venv/bin/python -m benchmarks.run [--out bench-results] [--systems framebus,imagezmq,...]

Writes OUT/results.json and OUT/results.md (the table of docs/benchmarks.md). Ratios are computed
within the run, because absolute figures drift on a shared machine. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.measure import cpu_model
from benchmarks.processes import REPO, agent
from benchmarks.scenarios import SLOW_SPAN_S, measure, pool_vs_one, relay_vs_direct
from benchmarks.source_clip import make_clip
from benchmarks.systems import SYSTEMS

log = logging.getLogger("bench")


def versions() -> dict[str, str]:
    import cv2
    import zmq

    out = {"python": platform.python_version(), "libzmq": zmq.zmq_version(), "opencv": cv2.__version__}
    for dist in ("framebus", "pyzmq", "simplejpeg", "numpy", "msgpack", "imagezmq", "vidgear", "py-spy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        first = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
        out["ffmpeg (clip encoder)"] = first.split()[2] if len(first.split()) > 2 else first
    return out


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def floor(clip: Path, seconds: float, paced: bool) -> dict[str, Any]:
    """The decode + encode floor, in a fresh process like the node's."""
    argv = agent("floor", "--clip", str(clip), "--seconds", str(seconds), *([] if paced else ["--unpaced"]))
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])["floor"]
    return result


def _guarded(what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One scenario of one system; a failure is recorded and the run goes on."""
    log.info("%s ...", what)
    started = time.monotonic()
    try:
        result: dict[str, Any] = fn(*args, **kwargs)
    except Exception as exc:
        log.error("%s failed: %s", what, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    log.info("%s done in %.0f s", what, time.monotonic() - started)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    out: Path = args.out
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    systems = [s for s in args.systems.split(",") if s]
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench",
        "machine": machine(),
        "versions": versions(),
    }
    clip = make_clip(out / "media")
    results["clip"] = {
        "codec": clip.codec,
        "frames": clip.frames,
        "size": f"{clip.width}x{clip.height}",
        "fps": clip.fps,
    }
    floors = [_guarded("floor (paced)", floor, clip.path, args.floor_seconds, True)]
    floors.append(_guarded("floor (unpaced)", floor, clip.path, args.floor_seconds / 2, False))

    results["fast"] = {
        s: _guarded(f"fast consumer: {s}", measure, s, clip.path, "fast", 1, work, args.fast_seconds, 1.0)
        for s in systems
    }
    results["fanout"] = {}
    for s in (s for s in systems if s != "stack"):
        results["fanout"][s] = {
            str(n): _guarded(
                f"fan-out {n}: {s}", measure, s, clip.path, "fast", n, work, args.fanout_seconds, 1.0, fanout=True
            )
            for n in args.fanout
        }
    floors.append(_guarded("floor (paced, again)", floor, clip.path, args.floor_seconds, True))
    results["floor"] = {"paced": [floors[0], floors[2]], "unpaced": floors[1]}
    span = args.slow_seconds
    results["slow"] = {
        s: _guarded(
            f"slow consumer: {s} ({span:g} s)",
            measure,
            s,
            clip.path,
            "slow",
            1,
            work,
            span + 1.0,
            0.0,
            slow_span_s=span,
        )
        for s in systems
    }
    if not args.no_scale_out:
        results["scale_out"] = {
            "pool": _guarded("pool of 1/2/3 members vs one worker", pool_vs_one, args.pool_window),
            "relay": _guarded("relay vs direct fan-out", relay_vs_direct, args.relay_seconds),
        }
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    soak_file = out / "soak.json"
    soak = json.loads(soak_file.read_text()) if soak_file.exists() else None
    results["ratios"] = report.ratios(results)
    if "scale_out" in results:
        results["scale_out_ratios"] = report.scale_out_ratios(results)
    results["goals"] = report.goals(results, soak)
    results["run_seconds"] = round(time.monotonic() - started)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=REPO / "bench-results")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {', '.join(SYSTEMS)}")
    p.add_argument("--slow-seconds", type=float, default=SLOW_SPAN_S, help="the slow consumer's life (default 60)")
    p.add_argument("--fast-seconds", type=float, default=10.0)
    p.add_argument("--fanout-seconds", type=float, default=10.0)
    p.add_argument("--fanout", type=lambda v: [int(x) for x in v.split(",")], default=[1, 4, 16])
    p.add_argument("--floor-seconds", type=float, default=10.0)
    p.add_argument("--pool-window", type=float, default=5.0, help="seconds measured per pool size (default 5)")
    p.add_argument("--relay-seconds", type=float, default=3.0, help="each relay measurement window (default 3)")
    p.add_argument("--no-scale-out", action="store_true", help="skip the pool and relay scenarios (they need root)")
    p.add_argument(
        "--report-only", action="store_true", help="redo results.md and the goals from results.json and soak.json"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:  # `make soak` does this itself when it ends
        results = json.loads((args.out / "results.json").read_text())
        soak_file = args.out / "soak.json"
        results["goals"] = report.goals(results, json.loads(soak_file.read_text()) if soak_file.exists() else None)
    else:
        results = run(args)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(report.markdown(results))
    log.info("wrote %s and %s in %d s", args.out / "results.json", args.out / "results.md", results["run_seconds"])
    print(report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
