"""A worker pool measured across hosts (network namespaces), as benchmarks/pool.py measures it,
shorter, with the issue's figures asserted with margins: one 720p30 camera, a 100 ms handler,
1/2/3 members (10/20/29 fps ideal), no frame processed twice, age p99 within the handler time and
two frame intervals, and a `kill -9` of one member that the others do not notice."""

from __future__ import annotations

from pathlib import Path

from benchmarks.pool import FPS, HANDLER_S, bench

WINDOW_S = 5.0
MIN_FPS = {1: 8.0, 2: 16.0, 3: 23.0}  # of 10 / 20 / 29: the 100 ms handler plus decode and a round trip
# The bound is the handler + 2 frame intervals (167 ms); a loaded 2-core CI machine adds
# scheduling delays to the tail that no design removes: the margin is one more frame interval.
AGE_P99_INTERVALS = 3


def expected_fps(members: int, camera_fps: float) -> float:
    """The pool's share of the frames the camera made: when other load on the machine starves
    the camera below 30 fps, no pool can process more than it makes."""
    return MIN_FPS[members] * min(1.0, camera_fps / FPS)


def test_a_pool_of_members_on_their_own_hosts_scales_and_survives_a_kill(tmp_path: Path) -> None:
    with bench(tmp_path) as b:
        phases, kill = b.run(WINDOW_S)
    report = "\n".join(map(str, [*phases, kill]))
    for p in phases:
        assert p.duplicates == 0, report
        assert p.camera_fps >= FPS / 2, f"the machine starved the camera: not a measurement of the pool\n{report}"
        assert p.processed_fps >= expected_fps(p.members, p.camera_fps), report
        interval_ms = 1000 / min(FPS, p.camera_fps)
        assert p.age_p99_ms <= HANDLER_S * 1000 + AGE_P99_INTERVALS * interval_ms, report
    # The survivors never waited for the dead member: their rate in the first second after the
    # kill is their rate before (within 20 %), and the stream has no gap near a second.
    assert kill.first_second_fps >= 0.8 * kill.before_fps, report
    assert kill.longest_gap_ms < 1000, report
