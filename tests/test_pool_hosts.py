"""A worker pool measured across hosts (network namespaces), as benchmarks/pool.py measures it,
shorter, with the issue's figures asserted with margins: one 720p30 camera, a 100 ms handler,
1/2/3 members (10/20/29 fps ideal), no frame processed twice, frame age near the handler time
(the bounds below say how near), and a `kill -9` of one member that the others do not notice;
then 8 cameras on 2 edges through a relay shared by 4 members, each camera within 15 % of the
others and every frame handled fresh."""

from __future__ import annotations

from pathlib import Path

from benchmarks.pool import FAIR_MEMBERS, FPS, HANDLER_S, bench, fair_bench

WINDOW_S = 6.0
MIN_FPS = {1: 8.0, 2: 16.0, 3: 23.0}  # of 10 / 20 / 29: the 100 ms handler plus decode and a round trip
# The bound on age p99 is the handler + 2 frame intervals (167 ms), which benchmarks/pool.py
# measures (149-158 ms on a quiet machine: docs/pools.md). A loaded 2-core CI machine stalls
# processes for a few hundred ms now and then, and a p99 catches those: here p99 (over all phases'
# results together) gets 150 ms of margin, which still fails any design that queues or hands out
# older frames (their age grows by seconds), and each phase's median, which stalls barely move,
# must be within the handler + 1 frame interval + 20 ms: the newest frame, every time.
AGE_P99_MARGIN_MS = 150


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
        assert p.age_p50_ms <= HANDLER_S * 1000 + 1000 / min(FPS, p.camera_fps) + 20, report
    ages = sorted(age for p in phases for age in p.ages_ms)
    interval_ms = 1000 / min(FPS, *(p.camera_fps for p in phases))
    assert ages[int(0.99 * len(ages))] <= HANDLER_S * 1000 + 2 * interval_ms + AGE_P99_MARGIN_MS, report
    # Recovered within 1 s: in the second after that, the survivors process their share (their
    # rate before the kill, within 20 %); and the pool's stream has no gap near a second.
    assert kill.second_second_fps >= 0.8 * kill.before_fps, report
    assert kill.longest_gap_ms < 1000, report


FAIR_WINDOW_S = 8.0
FAIR_SPREAD = 0.15  # the issue's: each camera's processed rate within 15 % of the others (of the median)
# A handed frame is the camera's newest: at most one frame interval old, plus the relay hop, the
# member's receive and a loaded machine's scheduling (measured 28 ms at 20 fps, 60 ms at 10 fps:
# docs/pools.md). With a credit per camera, a member of 8 cameras held 8 frames and each waited for
# the others' handler runs: 780 ms.
FAIR_AGE_MARGIN_MS = 80


def test_a_pool_over_8_cameras_through_a_relay_shares_its_work_fairly(tmp_path: Path) -> None:
    with fair_bench(tmp_path) as b:
        measured = b.run(FAIR_WINDOW_S)
    report = "\n".join(map(str, [measured, *measured.cameras]))
    assert measured.duplicates == 0, report
    for share in measured.cameras:
        nominal = b.expected_fps[share.camera]
        assert share.camera_fps >= nominal / 2, (
            f"the machine starved the camera: not a measurement of the pool\n{report}"
        )
        assert share.age_p50_ms <= 1000 / share.camera_fps + FAIR_AGE_MARGIN_MS, report
    # The pool worked at its members' pace (4 members of ~9 frames a second, when the cameras make
    # that many) and gave each camera the same share of it: the 20 fps cameras make twice the
    # frames of the 10 fps ones, and get no more of them handled.
    made = sum(share.camera_fps for share in measured.cameras)
    assert measured.processed_fps >= 0.7 * min(made, FAIR_MEMBERS / HANDLER_S), report
    assert measured.spread <= FAIR_SPREAD, report
