"""The benchmark harness's arithmetic (benchmarks/measure.py, benchmarks/report.py): what it
counts as published, delivered and fresh, and how it turns that into ratios and goals."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from benchmarks import report
from benchmarks.measure import (
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

S = 1_000_000_000


# What a report says of the run besides its figures (the machine, versions, command).
RUN_CONTEXT: dict[str, object] = {
    "machine": {"cores": 2, "cpu": "x", "load_average_at_start": [0.1], "load_average_at_end": [0.2]},
    "versions": {k: "1" for k in ("python", "pyzmq", "libzmq", "opencv", "simplejpeg", "imagezmq", "vidgear")},
    "clip": {"codec": "h264"},
    "command": "make bench",
    "date": "today",
}


def records(seq: list[int], capture_s: list[float], recv_s: list[float]) -> Records:
    return Records(
        np.array(seq, np.int64),
        (np.array(capture_s) * S).astype(np.int64),
        (np.array(recv_s) * S).astype(np.int64),
    )


def test_window_and_ages() -> None:
    r = records([0, 1, 2, 3], [0.0, 1.0, 2.0, 3.0], [0.5, 1.1, 2.2, 3.3])
    inside = r.received_between(1 * S, 3 * S)
    assert list(inside.seq) == [1, 2]
    assert np.allclose(inside.ages_ms(), [100, 200])
    assert summary_ms(inside.ages_ms()) == {"p50": 150.0, "p99": 199.0, "max": 200.0}
    assert summary_ms(np.zeros(0))["p50"] is None


def test_published_counts_sequence_gaps_as_published() -> None:
    # A subscriber that lost frames 2 and 3 to conflation still shows that 5 were published.
    r = records([0, 1, 4, 5, 6], [0.0, 0.1, 0.4, 0.5, 0.6], [0.0, 0.1, 0.4, 0.5, 0.6])
    assert published_from_seq(r, 0, int(0.55 * S)) == 6
    assert published_between([0, S // 2, S, 2 * S], 0, S) == 2


def test_age_around_takes_the_median_before_the_mark() -> None:
    recv = [float(t) for t in range(0, 61)]
    r = records(list(range(61)), [t - 0.02 * t for t in recv], recv)
    assert age_around(r, 0, 10) == 170.0  # received at 8 and 9 s (10 excluded): 160 and 180 ms old
    assert age_around(r, 0, 100) is None


def test_merge() -> None:
    a = records([0], [0.0], [0.1])
    b = records([5], [1.0], [1.2])
    assert list(merge([a, b]).seq) == [0, 5]
    assert len(merge([])) == 0


def test_proc_readings_of_this_process() -> None:
    pid = os.getpid()
    assert cpu_seconds(pid) > 0
    assert rss_bytes(pid) > 10 * 2**20
    assert process_tree(pid)[0] == pid


def _run(fb_age: float, peer_age: float, node: float, floor: float, one: float, sixteen: float) -> dict[str, Any]:
    def slow(age: float) -> dict[str, Any]:
        return {"slow_span_s": 60, "slow_age_ms": {"p99": age}, "age_trend_ms": {"10": age, "30": age, "60": age}}

    fast = {"sender_ms_per_frame": node, "consumer_ms_per_frame": 0.3, "age_ms": {"p50": 2.0}}
    results: dict[str, Any] = {
        "slow": {"framebus": slow(fb_age), "imagezmq": slow(peer_age)},
        "fast": {"framebus": fast, "imagezmq": dict(fast)},
        "fanout": {"framebus": {"1": {"sender_ms_per_frame": one}, "16": {"sender_ms_per_frame": sixteen}}},
        "floor": {"paced": [{"ms_per_frame": floor}, {"ms_per_frame": floor}]},
    }
    results["ratios"] = report.ratios(results)
    return results


def test_goals_met_and_missed() -> None:
    good = _run(fb_age=30, peer_age=40_000, node=4.0, floor=3.8, one=4.0, sixteen=4.4)
    assert good["ratios"]["imagezmq"]["slow_age_at_end"] == round(40_000 / 30, 2)
    verdicts = [g["met"] for g in report.goals(good, None)]
    assert verdicts == [True, True, True, True, None]  # the soak has not run
    bad = _run(fb_age=200, peer_age=1_000, node=5.0, floor=3.8, one=4.0, sixteen=5.0)
    assert [g["met"] for g in report.goals(bad, None)][:4] == [False, False, False, False]


def test_soak_verdict_and_markdown() -> None:
    results = _run(fb_age=30, peer_age=40_000, node=4.0, floor=3.8, one=4.0, sixteen=4.4)
    soak = {
        "minutes": 30,
        "date": "today",
        "processes": [
            {
                "system": "framebus",
                "name": "framebus capture node",
                "rss_start_mb": 60.0,
                "rss_end_mb": 60.5,
                "flat": True,
            }
        ],
    }
    assert report.goals(results, soak)[-1]["met"] is True
    results.update(
        **RUN_CONTEXT,
        goals=report.goals(results, soak),
    )
    table = report.markdown(results)
    assert "| framebus | imagezmq (PUB/SUB) |" in table
    assert "1333×" in table


def _scale_out(pool3: float, relay16: float, relay_p50: float, cpu: float) -> dict[str, Any]:
    phase = {"members": 1, "processed_fps": 10.0, "duplicates": 0}
    uplink = [
        {"mode": mode, "workers": n, "edge_bytes_per_s": per_worker * (n if mode == "direct" else 1)}
        for mode, per_worker in (("direct", 500e3), ("relay", 500e3))
        for n in (1, 4, 16)
    ]
    uplink[-1]["edge_bytes_per_s"] = relay16
    return {
        "pool": {
            "phases": [
                phase,
                {**phase, "members": 2, "processed_fps": 20.0},
                {**phase, "members": 3, "processed_fps": pool3},
            ],
            "handler_ms": 100.0,
            "camera_fps": 30,
        },
        "relay": {
            "uplink": uplink,
            "hop": {"direct": {"p50_ms": 2.0}, "relay": {"p50_ms": relay_p50}},
            "cpu": {"relay_cpu_per_camera": 0.01 * cpu, "subscriber_cpu_per_camera": 0.01, "ratio": cpu},
        },
    }


def test_scale_out_ratios_and_goals() -> None:
    """make bench's pool and relay scenarios: ratios within the run, and the issue's goals."""
    results = _run(fb_age=30, peer_age=40_000, node=4.0, floor=3.8, one=4.0, sixteen=4.4)
    results["scale_out"] = _scale_out(pool3=29.0, relay16=510e3, relay_p50=2.5, cpu=1.1)
    r = report.scale_out_ratios(results)
    assert r["pool3_vs_one_processed_fps"] == 2.9 and r["pool_duplicates"] == 0
    assert r["edge_bytes_relay16_vs_relay1"] == 1.02 and r["edge_bytes_direct16_vs_relay16"] == round(8e6 / 510e3, 2)
    assert r["relay_hop_p50_ms"] == 0.5
    assert [g["met"] for g in report.goals(results, None)][4:8] == [True, True, True, True]
    results["scale_out"] = _scale_out(pool3=20.0, relay16=1e6, relay_p50=9.0, cpu=1.5)
    assert [g["met"] for g in report.goals(results, None)][4:8] == [False, False, False, False]
    results["scale_out"]["relay"] = {"error": "PermissionError: ip netns needs root"}
    assert [g["met"] for g in report.goals(results, None)][5:8] == [None, None, None]


def test_scale_out_markdown() -> None:
    results = _run(fb_age=30, peer_age=40_000, node=4.0, floor=3.8, one=4.0, sixteen=4.4)
    results.update(
        **RUN_CONTEXT,
        scale_out=_scale_out(pool3=29.0, relay16=510e3, relay_p50=2.5, cpu=1.1),
    )
    results["goals"] = report.goals(results, None)
    table = report.markdown(results)
    assert (
        "| pool, 1 / 2 / 3 members (100 ms handler, a 30 fps camera): processed fps | 10.0 / 20.0 / 29.0 (0 duplicates) | 2.00× / 2.90× one worker |"
        in table
    )
    assert "| edge uplink kB/s, 1 / 4 / 16 workers, direct | 500 / 2,000 / 8,000 | 16× the relay's at 16 |" in table
    assert "| frame age p50 on loopback, ms | direct 2.0 / relay 2.5 | relay +0.5 ms |" in table
    assert "| relay CPU per camera <= 1.2x one subscriber's | <= 1.2x | 1.10x | met |" in table
