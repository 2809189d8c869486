"""worker_node.follow: which described endpoints a worker follows, and how fast it opens them.
(Real rogue nodes against real workers: tests/test_hostile_peers.py.)"""

from __future__ import annotations

import logging

import pytest

from framebus.worker_node.discovery import reachable_endpoint
from framebus.worker_node.follow import FollowPolicy

NODE = "tcp://10.0.0.5:5555"


@pytest.mark.parametrize(
    ("node", "described"),
    [
        (NODE, "tcp://10.0.0.5:5556"),
        ("tcp://[::1]:5555", "tcp://[0:0::1]:5556"),
        ("tcp://Edge1:5555", "tcp://edge1:5556"),
        ("tcp://localhost:5555", "tcp://127.0.0.1:5556"),  # what localhost resolves to
        ("ipc:///tmp/node", "ipc:///tmp/node-cam1"),
        ("ipc:///tmp/node", "tcp://127.0.0.1:5556"),  # a node reached over ipc:// is on this host
    ],
)
def test_endpoints_on_the_nodes_own_host_are_followed(node: str, described: str) -> None:
    assert FollowPolicy().refusal(node, described) is None


@pytest.mark.parametrize(
    ("node", "described", "why"),
    [
        (NODE, "tcp://10.0.0.6:5556", "not on the host the node was reached at (10.0.0.5); --follow-host 10.0.0.6"),
        (NODE, "tcp://127.0.0.1:22", "not on the host the node was reached at"),
        (NODE, "tcp://edge1:5556", "not on the host"),  # a name from the network is never looked up
        ("tcp://127.0.0.1:5555", "tcp://127.0.0.2:5556", "not on the host"),
        ("tcp://127.0.0.1:5555", "tcp://127.evil.example:5556", "not on the host"),
        (NODE, "ipc:///var/run/docker.sock", "ipc:// names a socket on this host"),
        ("ipc:///tmp/node", "tcp://10.0.0.6:5556", "may only name ipc:// or loopback endpoints"),
        (NODE, "inproc://x", "inproc:// (a socket inside one process) is not accepted here"),
        (NODE, "tcp://10.0.0.5:0;10.0.0.6:5556", "names a source address"),
        (NODE, "tcp://rogue-no-port", "has no port"),
        (NODE, "tcp://10.0.0.5:*", "port '*' (any free port) is for binding"),
    ],
)
def test_other_endpoints_are_refused_and_say_why(node: str, described: str, why: str) -> None:
    refusal = FollowPolicy().refusal(node, described)
    assert refusal is not None and why in refusal, refusal


def test_follow_hosts_are_the_deliberate_exception() -> None:
    policy = FollowPolicy(["10.0.0.6", "::2", "cams.example"])
    for described in ("tcp://10.0.0.6:5556", "tcp://[::2]:1", "tcp://CAMS.example:1"):
        assert policy.refusal(NODE, described) is None, described
    assert policy.refusal(NODE, "tcp://10.0.0.7:5556") is not None
    assert policy.refusal(NODE, "ipc:///tmp/x") is not None  # hosts, not Unix sockets


@pytest.mark.parametrize(
    ("described", "node", "reached"),
    [
        ("tcp://0.0.0.0:5556", "tcp://edge1:5555", "tcp://edge1:5556"),
        ("tcp://*:5556", "tcp://[fe80::1%eth0]:5555", "tcp://[fe80::1%eth0]:5556"),
        ("tcp://[::]:5556", "tcp://10.0.0.5:5555", "tcp://10.0.0.5:5556"),
        ("tcp://[::0]:5556", "ipc:///tmp/node", "tcp://[::1]:5556"),
        ("tcp://0.0.0.0:5556", "ipc:///tmp/node", "tcp://127.0.0.1:5556"),
        ("tcp://0.0.0.0:*", "tcp://edge1:5555", "tcp://0.0.0.0:*"),  # refused later: no port
        ("tcp://10.0.0.9:5556", "tcp://edge1:5555", "tcp://10.0.0.9:5556"),
    ],
)
def test_a_wildcard_bind_means_the_nodes_host(described: str, node: str, reached: str) -> None:
    assert reachable_endpoint(described, node) == reached


def test_each_refused_endpoint_is_logged_once_and_lines_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    policy = FollowPolicy()
    with caplog.at_level(logging.WARNING, "worker_node.follow"):
        for _ in range(5):
            assert not policy.admit(NODE, "cam1", "tcp://10.0.0.6:22")
        assert len(caplog.records) == 1
        assert caplog.records[0].getMessage() == (
            f"node {NODE} described camera cam1 at tcp://10.0.0.6:22: not followed: not on the host the node "
            "was reached at (10.0.0.5); --follow-host 10.0.0.6 would allow it"
        )
        for port in range(1, 1000):  # a node naming ever new endpoints
            policy.admit(NODE, "cam1", f"tcp://10.0.0.6:{port}")
    assert len(caplog.records) <= 25


def test_new_sockets_are_rationed_per_node() -> None:
    policy = FollowPolicy(burst=10, per_second=0.001)
    assert sum(policy.may_open(NODE) for _ in range(100)) == 10
    assert sum(policy.may_open("tcp://10.0.0.7:5555") for _ in range(100)) == 10  # each node has its own
