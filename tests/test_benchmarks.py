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
        machine={"cores": 2, "cpu": "x", "load_average_at_start": [0.1], "load_average_at_end": [0.2]},
        versions={k: "1" for k in ("python", "pyzmq", "libzmq", "opencv", "simplejpeg", "imagezmq", "vidgear")},
        clip={"codec": "h264"},
        command="make bench",
        date="today",
        goals=report.goals(results, soak),
    )
    table = report.markdown(results)
    assert "| framebus | imagezmq (PUB/SUB) |" in table
    assert "1333×" in table
