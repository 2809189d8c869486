"""Fairness across cameras (common/pool_turns.py, docs/pools.md): a pool member that gives a
token holds one frame at a time across every camera of a process, and the camera its pool had
the fewest frames of is its turn. Real pull servers in this process, sharing one `Turns`, and
members as real DEALER sockets (the netns test of 8 cameras through a relay is in
test_pool_hosts.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from statistics import median

import pytest
import zmq

from framebus.common import pool_turns
from framebus.common.pool_turns import Turns
from framebus.common.protocol import Frame, FrameHeader, PoolResult, decode, encode_frame, encode_pull_request
from framebus.common.pull_server import PullServer
from tests.support.processes import hold, wait_until
from tests.support.wire import JPEG

TIMEOUT_S = 5.0
TOKEN = "a1b2c3"


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(0)


def serve(ctx: zmq.Context, count: int) -> Iterator[list[PullServer]]:
    turns = Turns()  # this test's own: the process's TURNS would mix tests
    servers = [PullServer(ctx, "tcp://127.0.0.1:*", f"cam{i}", turns=turns) for i in range(count)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def cameras(ctx: zmq.Context) -> Iterator[list[PullServer]]:
    yield from serve(ctx, 3)


def offer(server: PullServer, seq: int) -> None:
    now = time.time_ns()
    server.offer_frame(seq, encode_frame(FrameHeader(server._camera, seq, now, now, 8, 8), JPEG))


class Member:
    """One DEALER per camera, as a worker has; `token` the same on all of them."""

    def __init__(self, ctx: zmq.Context, servers: list[PullServer], token: str) -> None:
        self.token = token
        self.socks = []
        for server in servers:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(server.endpoint)
            self.socks.append(sock)

    def ask(self, camera: int, after_seq: int = -1, result: PoolResult | None = None) -> None:
        self.socks[camera].send(encode_pull_request(after_seq, "p", result, self.token))

    def ask_everywhere(self) -> None:
        for camera in range(len(self.socks)):
            self.ask(camera)

    def handed(self, timeout_s: float = TIMEOUT_S) -> list[tuple[int, int]]:
        """(camera, seq) of the frames handed to it: waits for the first, then takes what else
        arrived within 0.3 s (a second frame, if the node handed one, is on its way by then)."""
        poller = zmq.Poller()
        for sock in self.socks:
            poller.register(sock, zmq.POLLIN)
        got: list[tuple[int, int]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready = dict(poller.poll(300 if got else max(1, int((deadline - time.monotonic()) * 1000))))
            if not ready:
                break
            for camera, sock in enumerate(self.socks):
                if sock in ready:
                    message = decode(sock.recv())
                    assert isinstance(message, Frame)
                    got.append((camera, message.header.seq))
        return got

    def nothing(self, ms: int = 300) -> bool:
        poller = zmq.Poller()
        for sock in self.socks:
            poller.register(sock, zmq.POLLIN)
        return not poller.poll(ms)


def waiting(servers: list[PullServer], count: int = 1) -> None:
    wait_until(lambda: all(len(s._pending) >= count for s in servers), TIMEOUT_S, "the requests to wait")


def test_a_member_with_a_token_holds_one_frame_across_cameras_and_the_cameras_take_turns(
    ctx: zmq.Context, cameras: list[PullServer]
) -> None:
    m = Member(ctx, cameras, TOKEN)
    m.ask_everywhere()
    waiting(cameras)
    seq = 100
    turns = []
    for _ in range(3 * len(cameras)):
        for server in cameras:  # every camera has a frame the pool has not had, every time
            seq += 1
            offer(server, seq)
        got = m.handed()
        assert len(got) == 1, f"handed {got}: one frame at a time across the cameras"
        camera, held = got[0]
        turns.append(camera)
        m.ask(camera, held, PoolResult(held, {}))  # done with it: the next request names it
    assert Counter(turns) == {0: 3, 1: 3, 2: 3}, turns
    rounds = [sorted(turns[i : i + 3]) for i in range(0, len(turns), 3)]
    assert all(r == [0, 1, 2] for r in rounds), f"not a round robin: {turns}"


def test_a_request_sent_again_while_its_frame_is_on_the_way_frees_nothing(
    ctx: zmq.Context, cameras: list[PullServer]
) -> None:
    m = Member(ctx, cameras, TOKEN)
    for server in cameras:
        offer(server, 5)
    m.ask_everywhere()
    ((camera, held),) = m.handed()
    m.ask(camera, held - 1)  # the 2 s re-send, crossing the frame: it names an older frame
    for server in cameras:
        offer(server, 6)
    assert m.nothing(), "a re-sent request freed the member: it was handed a second frame"
    m.ask(camera, held)  # now it has it
    assert len(m.handed()) == 1


def test_a_member_that_connected_again_is_free_at_once(ctx: zmq.Context, cameras: list[PullServer]) -> None:
    """Its frame was lost with the old connection: its request on the new one frees it (else it
    would sit out the 10 s lease)."""
    m = Member(ctx, cameras, TOKEN)
    for server in cameras:
        offer(server, 5)
    m.ask_everywhere()
    ((camera, held),) = m.handed()
    m.socks[camera].close(0)  # the connection breaks; the member dials again, and asks again
    fresh = Member(ctx, [cameras[camera]], TOKEN)
    fresh.ask(0, held - 1)
    for server in cameras:
        offer(server, 6)
    assert len(m.handed() + fresh.handed(timeout_s=0.3)) == 1


def test_without_a_token_a_member_keeps_a_credit_per_camera(ctx: zmq.Context, cameras: list[PullServer]) -> None:
    """Requests of older members (no `member`) are answered as before."""
    m = Member(ctx, cameras, "")
    for server in cameras:
        offer(server, 9)
    m.ask_everywhere()
    assert sorted(m.handed()) == [(0, 9), (1, 9), (2, 9)]


def test_a_camera_with_nothing_new_is_skipped_and_made_up_for_by_a_few_frames(
    ctx: zmq.Context, cameras: list[PullServer]
) -> None:
    m = Member(ctx, cameras, TOKEN)
    m.ask_everywhere()
    waiting(cameras)  # every camera has joined the pool's turns, level
    seq, held = 0, (-1, -1)

    def next_turn(fresh: list[int]) -> int:
        """The frames come while the member works on its last one; then it asks again (done):
        every fresh frame is in place when the turn is chosen."""
        nonlocal seq, held
        for camera in fresh:
            seq += 1
            offer(cameras[camera], seq)
        if held[0] >= 0:
            m.ask(*held)
        ((camera, got),) = m.handed()
        held = (camera, got)
        return camera

    stalled = [next_turn([0, 1]) for _ in range(10)]  # camera 2 stalls: the others go on, in turn
    assert Counter(stalled) == {0: 5, 1: 5}
    back = [next_turn([0, 1, 2]) for _ in range(9)]  # camera 2 is back: it catches up MAX_LAG frames
    assert back[: pool_turns.MAX_LAG] == [2] * pool_turns.MAX_LAG, back
    assert Counter(back[pool_turns.MAX_LAG :]) == {0: 2, 1: 2, 2: 1}, back  # then the turns go round


def test_members_with_tokens_share_the_frames_and_never_hold_two(ctx: zmq.Context, cameras: list[PullServer]) -> None:
    a, b = Member(ctx, cameras, "a"), Member(ctx, cameras, "b")
    for server in cameras:
        offer(server, 1)
    a.ask_everywhere()
    b.ask_everywhere()
    got_a, got_b = a.handed(), b.handed()
    assert len(got_a) == 1 and len(got_b) == 1, (got_a, got_b)
    assert got_a[0][0] != got_b[0][0], "two members were handed the same camera's frame"


def test_a_member_asking_at_too_many_cameras_is_refused_there_with_one_line(
    ctx: zmq.Context, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_turns, "MAX_CAMERAS_PER_MEMBER", 2)
    caplog.set_level(logging.WARNING)
    servers_ = serve(ctx, 4)
    servers = next(servers_)
    try:
        m = Member(ctx, servers, TOKEN)
        for _ in range(3):
            m.ask_everywhere()
        wait_until(lambda: "asks on more than 2 cameras" in caplog.text, TIMEOUT_S, "the refusal's line")
        hold(0.3)  # a deliberate gap: every request has been read
        assert sum(len(s._pending) for s in servers) == 2, "only 2 cameras keep the member's request"
        lines = [r for r in caplog.records if "asks on more than" in r.getMessage()]
        assert len(lines) == 1, "one rate-limited line, not one per request"
        for server in servers:
            offer(server, 3)
        assert len(m.handed()) == 1  # the member still works, on the cameras it has
    finally:
        next(servers_, None)


def test_member_tokens_per_pool_are_bounded_with_one_line(
    ctx: zmq.Context, cameras: list[PullServer], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_turns, "MAX_MEMBERS", 2)
    caplog.set_level(logging.WARNING)
    members = [Member(ctx, cameras[:1], f"t{i}") for i in range(4)]
    for m in members:
        m.ask(0)
    wait_until(lambda: "member tokens already" in caplog.text, TIMEOUT_S, "the refusal's line")
    hold(0.3)  # a deliberate gap: every request has been read
    assert len(cameras[0]._pending) == 2
    assert len([r for r in caplog.records if "member tokens already" in r.getMessage()]) == 1


def test_many_cameras_at_different_rates_each_get_an_equal_share_of_fresh_frames(ctx: zmq.Context) -> None:
    """8 cameras (4 at 20 fps, 4 at 40), 4 members whose handler takes 50 ms: the pool takes
    ~80 of 240 frames a second. Each camera's processed count is within 15 % of the median
    (a share by frame rate would give the 40 fps cameras twice as many), and every frame is at
    most a frame interval old when handed: a member never holds a frame while it works on
    another (with a credit per camera, each frame waited for the others': ~350 ms)."""
    servers_ = serve(ctx, 8)
    servers = next(servers_)
    rates = [20.0] * 4 + [40.0] * 4
    handler_s, window_s = 0.05, 3.0
    stop = threading.Event()
    counts: Counter[int] = Counter()
    ages: list[tuple[int, float]] = []
    lock = threading.Lock()

    def camera(i: int) -> None:
        seq, due = 0, time.monotonic()
        while not stop.is_set():
            offer(servers[i], seq)
            seq += 1
            due += 1 / rates[i]
            stop.wait(max(0.0, due - time.monotonic()))  # the camera's own pace

    def member(token: str) -> None:
        m = Member(ctx, servers, token)
        poller = zmq.Poller()
        for sock in m.socks:
            poller.register(sock, zmq.POLLIN)
        m.ask_everywhere()
        while not stop.is_set():
            for sock in dict(poller.poll(100)):
                message = decode(sock.recv())
                assert isinstance(message, Frame)
                h = message.header
                with lock:
                    counts[int(h.camera[3:])] += 1
                    ages.append((int(h.camera[3:]), (time.time_ns() - h.capture_ns) / 1e6))
                stop.wait(handler_s)  # the handler's work
                sock.send(encode_pull_request(h.seq, "p", PoolResult(h.seq, {}), token))
        for sock in m.socks:
            sock.close(0)

    threads = [threading.Thread(target=camera, args=(i,), daemon=True) for i in range(8)]
    threads += [threading.Thread(target=member, args=(f"m{k}",), daemon=True) for k in range(4)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: len(counts) == 8, TIMEOUT_S, "every camera handled")
        hold(0.5)  # past the start
        with lock:
            counts.clear()
            ages.clear()
        hold(window_s)  # the measurement window
        with lock:
            shares, aged = dict(counts), list(ages)
    finally:
        stop.set()
        for thread in threads:
            thread.join(2)
        next(servers_, None)
    middle = median(shares.values())
    report = f"{shares} (median {middle})"
    assert middle >= 0.5 * 4 * window_s / handler_s / 8, f"the pool barely worked: {report}"
    assert all(abs(n / middle - 1) <= 0.15 for n in shares.values()), report
    p50 = median(age for _, age in aged)
    assert p50 <= 1000 / min(rates) + 30, f"frames waited in the members: age p50 {p50:.0f} ms"
