"""The relay's figures (docs/relay.md), asserted with margin: the scenarios of benchmarks/relay.py,
shorter. Hosts are network namespaces (tests/support/netns.py); the edge's uplink is counted by the kernel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks import relay as scenarios
from tests.support.netns import Network


@pytest.fixture
def network() -> Iterator[Network]:
    with Network() as net:
        yield net


def test_the_edge_sends_one_copy_however_many_workers_read_the_relay(network: Network) -> None:
    rows = scenarios.uplink(network, workers=(1, 4, 16), seconds=3.0)
    sent = {(r["mode"], r["workers"]): r["edge_bytes_per_s"] for r in rows}
    one = sent[("relay", 1)]
    for workers in (4, 16):
        assert 0.8 * one <= sent[("relay", workers)] <= 1.2 * one, rows  # equal, whatever the number of workers
        assert sent[("direct", workers)] >= 0.8 * workers * sent[("direct", 1)], rows  # direct: a copy each
    assert all(r["fps_per_worker"] >= 10 for r in rows), rows  # 15 fps published: every worker is served


def test_the_relay_hop_adds_at_most_3_ms_to_frame_age() -> None:
    ages = scenarios.hop(seconds=4.0)
    assert ages["relay"]["frames"] >= 40, ages
    assert ages["relay"]["p50_ms"] - ages["direct"]["p50_ms"] <= 3.0, ages


def test_the_relay_costs_about_one_subscriber_per_camera() -> None:
    """Against the cheapest subscriber there is (FrameReceiver, nothing done with the frames);
    the relay also sends each frame on, and on one host the kernel's receive work of that send
    is counted to the relay too. docs/relay.md has the figures."""
    used = scenarios.cpu(cameras=4, seconds=8.0)
    print(f"\nrelay CPU / one subscriber's: {used}")
    assert used["ratio"] <= 1.45, used  # measured 1.22-1.27 quiet (the target, 1.2, is missed: docs/relay.md)


def test_a_slow_edge_uplink_keeps_frame_age_bounded_through_a_pulling_relay(network: Network) -> None:
    ages = scenarios.slow_link(network, rate="2mbit", seconds=6.0)
    direct, relayed = ages["direct pull"], ages["relay --pull"]
    assert relayed["frames"] >= 10, ages
    assert relayed["p50_ms"] <= 1.3 * direct["p50_ms"] + 30, ages  # as the direct path does
    assert relayed["p99_ms"] <= direct["p99_ms"] + 250, ages  # one late frame of ~30 is the p99: a loaded machine's
    assert relayed["p50_ms"] < ages["relay"]["p50_ms"], ages  # pulling upstream is what bounds it


def test_a_node_behind_nat_is_served_by_the_relay_with_describe_pull_and_pools(network: Network) -> None:
    """An edge that only connects out (capture-node --connect) to `relay --listen`: a worker on a
    third host describes the relay, pulls the camera and shares it in a pool, all from the
    relay's own state (it cannot reach the edge)."""
    seen = scenarios.behind_nat(network, seconds=3.0)
    info = seen["describe"]["site3/cam1"]
    assert info["state"] == "streaming", seen
    assert (info["width"], info["height"]) == (640, 360), seen
    assert info["fps"] >= 10, seen  # the rate the relay receives: a NAT'd node describes nothing itself
    assert info["published_fps"] >= 10, seen
    assert info["pull_endpoint"], seen
    down = seen["describe"]["site3/gate"]  # no frame yet: its node's own state and reason
    assert down["state"] == "source-error" and "connection refused" in down["reason"], down
    assert seen["pull"]["frames"] >= 10, seen
    assert seen["pool"]["results"] >= 5, seen
    assert seen["pool"]["members"] == ["m1"], seen
