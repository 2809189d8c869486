"""One measured run of one system: deploy, let it settle, sample CPU (and memory) of every
process over a window, stop, and summarise the consumers' records.

Sender CPU is divided by the frames it published in the window (peers log what they sent;
for framebus the sequence numbers its fast subscribers saw), consumer CPU by the frames
delivered in the window.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import pool, relay
from benchmarks.measure import (
    MachineSample,
    Records,
    age_around,
    cpu_seconds,
    merge,
    process_tree,
    published_between,
    published_from_seq,
    rss_bytes,
    summary_ms,
)
from benchmarks.systems import deploy
from tests.support.netns import Network

SLOW_SPAN_S = 60.0  # the slow consumer's life; its age trend is read at 1/6, 1/2 and all of it


def expand(pids: dict[str, list[int]]) -> dict[str, list[int]]:
    """Each role's processes with their descendants (the capture node's camera processes);
    "other" (the stack recipe's launcher, parent of the roles' processes) stays as it is."""
    return {role: ps if role == "other" else [t for p in ps for t in process_tree(p)] for role, ps in pids.items()}


def _sample(pids: dict[str, list[int]]) -> dict[int, tuple[float, int]]:
    out = {}
    for role_pids in pids.values():
        for pid in role_pids:
            try:
                out[pid] = (cpu_seconds(pid), rss_bytes(pid))
            except OSError:
                out[pid] = (0.0, 0)
    return out


def _cpu_delta(pids: list[int], before: dict[int, tuple[float, int]], after: dict[int, tuple[float, int]]) -> float:
    """CPU seconds spent in the window; a process that started within it counts whole."""
    return sum(after[p][0] - before.get(p, (0.0, 0))[0] for p in pids if p in after)


def _per_frame_ms(cpu_s: float, frames: int) -> float | None:
    return round(1000 * cpu_s / frames, 3) if frames else None


def measure(
    system: str,
    clip: Path,
    mode: str,
    consumers: int,
    work: Path,
    window_s: float,
    settle_s: float,
    fanout: bool = False,
    slow_span_s: float = SLOW_SPAN_S,
) -> dict[str, Any]:
    """Run one system in one scenario and return its figures."""
    dep = deploy(system, clip, mode, consumers, work, fanout)
    try:
        if settle_s:
            time.sleep(settle_s)  # skip the start-up transient: part of the measurement design
        before, machine0, t0 = _sample(expand(dep.pids)), MachineSample.take(), time.time_ns()
        time.sleep(window_s)  # the measured window
        roles = expand(dep.pids)
        after, machine1, t1 = _sample(roles), MachineSample.take(), time.time_ns()
    finally:
        dep.stop()
    records = [Records.from_json(json.loads(p.read_text())) for p in dep.records if p.exists()]
    cpu = {role: round(_cpu_delta(pids, before, after), 3) for role, pids in roles.items()}
    rss_mb = {role: [round(after[p][1] / 2**20, 1) for p in pids] for role, pids in roles.items() if role != "other"}
    if dep.sent_log is not None and dep.sent_log.exists():
        published = published_between(json.loads(dep.sent_log.read_text())["capture_ns"], t0, t1)
    else:
        published = published_from_seq(merge(records), t0, t1)
    in_window = [r.received_between(t0, t1) for r in records]
    delivered = sum(len(r) for r in in_window)
    window = (t1 - t0) / 1e9
    result: dict[str, Any] = {
        "system": system,
        "mode": mode,
        "consumers": consumers,
        "window_s": round(window, 2),
        "machine_busy_percent": round(machine1.busy_percent_since(machine0), 1),
        "cpu_s": cpu,
        "rss_mb_at_end": rss_mb,
        "published": published,
        "published_fps": round(published / window, 2),
        "delivered": delivered,
        "delivered_fps_per_consumer": round(delivered / window / max(1, consumers), 2),
        "sender_ms_per_frame": _per_frame_ms(cpu.get("sender", 0.0), published),
        "consumer_ms_per_frame": _per_frame_ms(cpu.get("consumer", 0.0), delivered),
        "broker_ms_per_frame": _per_frame_ms(cpu["broker"], delivered) if "broker" in cpu else None,
    }
    timed = merge(in_window)
    timed = Records(
        timed.seq[timed.capture_ns > 0], timed.capture_ns[timed.capture_ns > 0], timed.recv_ns[timed.capture_ns > 0]
    )
    result["age_ms"] = summary_ms(timed.ages_ms()) if len(timed) else None
    if mode == "slow" and records and len(records[0]):
        result.update(_slow_figures(records[0], slow_span_s))
    return result


def _slow_figures(records: Records, span: float) -> dict[str, Any]:
    """Age over the first `span` s of the consumer's life and its trend, from its first frame."""
    first = int(records.recv_ns[0])
    trend_at = (span / 6, span / 2, span)
    life = records.received_between(first, first + int(span * 1e9) + 1)
    return {
        "slow_span_s": span,
        "slow_age_ms": summary_ms(life.ages_ms()),
        "slow_delivered_fps": round(len(life) / span, 2),
        "age_trend_ms": {f"{t:g}": age_around(records, first, t) for t in trend_at},
    }


# ----------------------------------------------------------------------------- scale-out (issue 14)
# Hosts are network namespaces (tests/support/netns.py): these need root and iproute2, as
# `make bench-pool` and `make bench-relay` do; they are their scenarios, shorter.


def pool_vs_one(window_s: float = 5.0) -> dict[str, Any]:
    """A 720p30 camera and a 100 ms handler: processed fps of a pool of 1, 2 and 3 members,
    each on a host of its own, and the survivors after `kill -9` of one (benchmarks/pool.py)."""
    with tempfile.TemporaryDirectory() as log_dir, pool.bench(Path(log_dir)) as bench:
        phases, kill = bench.run(window_s)
    return {
        "phases": [{k: v for k, v in asdict(p).items() if k != "ages_ms"} for p in phases],
        "kill": asdict(kill),
        "handler_ms": pool.HANDLER_S * 1000,
        "camera_fps": pool.FPS,
    }


def relay_vs_direct(seconds: float = 3.0) -> dict[str, Any]:
    """The edge's uplink bytes with 1, 4 and 16 remote workers reading directly and through a
    relay; frame age through the relay and directly (loopback); the relay's CPU per camera
    against one subscriber's (benchmarks/relay.py)."""
    with Network() as net:
        uplink = relay.uplink(net, seconds=seconds)
    return {"uplink": uplink, "hop": relay.hop(seconds), "cpu": relay.cpu(seconds=2 * seconds)}
