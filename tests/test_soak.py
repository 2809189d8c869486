"""`make soak`'s verdict: a robust slope over the second half, against a bound that a short
run widens. The soak itself runs for tens of minutes (docs/benchmarks.md); this checks its
arithmetic on made-up series."""

from __future__ import annotations

import numpy as np

from benchmarks.soak import SLOPE_BOUND, _summary, bound_for, robust_slope

MB = 2**20


def _series(minutes: float, mb_per_hour: float, noise_mb: float = 0.05, seed: int = 1) -> list[tuple[float, int, int]]:
    """(seconds, RSS, RssAnon) every 5 s: 100 MB, a slope, allocator noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, minutes * 60, 5.0)
    mb = 100 + mb_per_hour * t / 3600 + rng.normal(0, noise_mb, len(t))
    return [(float(s), int(v * MB), int((v - 60) * MB)) for s, v in zip(t, mb, strict=True)]


def test_the_issue_s_leak_fails_and_a_flat_process_passes() -> None:
    bound = bound_for(20)
    assert bound == SLOPE_BOUND
    leaking = _summary(_series(20, 5.5), bound)  # the save worker of issue 11: +5.5 MB/h
    assert not leaking["flat"]
    assert 4.5 < leaking["slope_mb_per_hour"] < 6.5
    assert 4.5 < leaking["anon_slope_mb_per_hour"] < 6.5
    assert _summary(_series(20, 0.0), bound)["flat"]


def test_outliers_and_start_up_growth_do_not_count() -> None:
    samples = _series(20, 0.0)
    samples[:40] = [(t, rss - int((40 - i) * 0.1 * MB), anon) for i, (t, rss, anon) in enumerate(samples[:40])]
    for i in range(130, 240, 20):  # a frame buffer more in flight at a few samples
        t, rss, anon = samples[i]
        samples[i] = (t, rss + 3 * MB, anon + 3 * MB)
    summary = _summary(samples, bound_for(20))
    assert summary["flat"], summary
    assert abs(summary["slope_mb_per_hour"]) < 0.5


def test_a_short_run_has_a_wider_bound() -> None:
    assert bound_for(2) == 10 * SLOPE_BOUND
    assert bound_for(10) == 2 * SLOPE_BOUND
    assert bound_for(60) == SLOPE_BOUND
    assert _summary(_series(2, 0.0, noise_mb=0.1), bound_for(2))["flat"]


def test_robust_slope_is_the_median_of_pairwise_slopes() -> None:
    t = np.array([0.0, 3600.0, 7200.0])
    assert robust_slope(t, np.array([1.0, 2.0, 3.0])) == 1.0
    assert robust_slope(t, np.array([1.0, 50.0, 3.0])) == 1.0  # the middle one is an outlier
    assert robust_slope(np.array([5.0, 5.0]), np.array([1.0, 2.0])) == 0.0
