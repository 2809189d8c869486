"""A node's control endpoint under a flood of describe requests: each answer costs ~0.1-0.3 ms
of CPU, so one peer asking as fast as it can used to hold a core of the edge box. Now each
connection has a budget (16 at once, then 8 a second) and all of them together one more
(256, then 200 a second); a worker asking at its normal pace is still answered at once."""

from __future__ import annotations

import time

import zmq

from framebus.common.control import ALL_PEERS_BURST, ALL_PEERS_PER_S, PER_PEER_BURST, PER_PEER_PER_S
from framebus.common.protocol import encode_describe_request
from framebus.worker_node.discovery import describe
from tests.support.processes import Processes

FLOOD_S = 2.0


def flood(ctx: zmq.Context, control: str, connections: int) -> tuple[int, float]:
    """Ask as fast as the sockets take it for FLOOD_S; count the answers. (answers, seconds)"""
    socks = []
    for _ in range(connections):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.connect(control)
        socks.append(sock)
    request = encode_describe_request()
    answers = 0
    started = time.monotonic()
    while time.monotonic() - started < FLOOD_S:
        for sock in socks:
            for _ in range(50):
                try:
                    sock.send(request, zmq.NOBLOCK)
                except zmq.Again:
                    break
            while sock.poll(0, zmq.POLLIN):
                sock.recv()
                answers += 1
    elapsed = time.monotonic() - started
    drain_until = time.monotonic() + 1.0  # answers still on their way
    while time.monotonic() < drain_until:
        for sock in socks:
            while sock.poll(10, zmq.POLLIN):
                sock.recv()
                answers += 1
    for sock in socks:
        sock.close()
    return answers, elapsed + 1.0


def test_one_peer_flooding_describe_gets_its_budget_and_others_are_answered(nodes: Processes) -> None:
    node, control = nodes.capture("--width", "160", "--height", "120")
    ctx = zmq.Context()
    try:
        answers, seconds = flood(ctx, control, 1)
        assert answers <= PER_PEER_BURST + PER_PEER_PER_S * seconds + 2, answers
        assert answers >= PER_PEER_BURST, answers  # the budget is given, not less
        started = time.monotonic()
        assert describe(ctx, control, timeout=5.0).cameras  # a worker asking normally: a fresh budget
        assert time.monotonic() - started < 1.0
    finally:
        ctx.destroy(0)
    node.wait_for(r"WARNING framebus.control: control: a peer asks more than 8 times a second; the rest ignored")


def test_many_connections_flooding_describe_are_bounded_in_all(nodes: Processes) -> None:
    node, control = nodes.capture("--width", "160", "--height", "120")
    ctx = zmq.Context()
    try:
        answers, seconds = flood(ctx, control, 100)
    finally:
        ctx.destroy(0)
    assert answers <= ALL_PEERS_BURST + ALL_PEERS_PER_S * seconds + 2, answers
    node.wait_for(r"control: asked more than 200 times a second in all; the rest ignored")
