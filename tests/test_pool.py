"""Worker pools on the pull endpoint (common/pool.py, docs/pools.md): the wire fields, the
pull server handing each frame to one member, results published as one stream, the bounds a
hostile member meets; then real `worker-node process --pool` members against a capture node."""

from __future__ import annotations

import itertools
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator

import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from framebus.common import pool as pools
from framebus.common.protocol import (
    CameraInfo,
    Frame,
    FrameHeader,
    Kind,
    PoolResult,
    ProtocolError,
    PullRequest,
    decode,
    encode_frame,
    encode_pull_request,
)
from framebus.common.pull_server import PullServer
from framebus.worker_node import process
from framebus.worker_node.discovery import describe
from tests.support.processes import Processes, hold, wait_until
from tests.support.wire import JPEG, raw

_ports = itertools.count()
TIMEOUT_MS = 5000
CAMERA = "door"


# ----------------------------------------------------------------------------- the wire


def test_a_pool_request_and_its_result_survive_the_wire() -> None:
    plain = decode(encode_pull_request(3))
    assert plain == PullRequest(3)
    joined = decode(encode_pull_request(-1, "faces"))
    assert joined == PullRequest(-1, "faces")
    meta = {"results": {"faces": 2}, "handler_ms": 100.0}
    back = decode(encode_pull_request(41, "faces", PoolResult(41, meta)))
    assert back == PullRequest(41, "faces", PoolResult(41, meta))
    picture = decode(encode_pull_request(41, "faces", PoolResult(41, {}, (640, 360), JPEG)))
    assert isinstance(picture, PullRequest) and picture.result is not None
    assert picture.result.size == (640, 360) and bytes(picture.result.jpeg or b"") == JPEG
    token = decode(encode_pull_request(41, "faces", PoolResult(41, meta), "9f86d081884c7d65"))
    assert token == PullRequest(41, "faces", PoolResult(41, meta), "9f86d081884c7d65")


@given(
    after_seq=st.integers(-1, 2**64 - 1),
    pool=st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True).filter(lambda p: p not in (".", "..")),
    seq=st.integers(0, 2**64 - 1),
    meta=st.dictionaries(
        st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8),
        st.integers(-(2**63), 2**64 - 1),
        max_size=8,
    ),
    picture=st.booleans(),
)
def test_any_valid_pool_request_round_trips(
    after_seq: int, pool: str, seq: int, meta: dict[str, int], picture: bool
) -> None:
    result = PoolResult(seq, meta, (8, 8), JPEG) if picture else PoolResult(seq, meta)
    assert decode(encode_pull_request(after_seq, pool, result)) == PullRequest(after_seq, pool, result)


@pytest.mark.parametrize(
    ("header", "payload", "problem"),
    [
        ({"after_seq": 1, "pool": "a b"}, b"", "pool name 'a b' is invalid"),
        ({"after_seq": 1, "pool": ".."}, b"", "pool name '..' is invalid"),
        ({"after_seq": 1, "pool": "x" * 65}, b"", "is invalid"),
        ({"after_seq": 1, "pool": 7}, b"", "field 'pool' must be str"),
        ({"after_seq": 1, "result": {"seq": 1}}, b"", "a 'result' needs a 'pool'"),
        ({"after_seq": 1, "pool": "p", "result": {"seq": -1}}, b"", "'seq'=-1 is outside"),
        ({"after_seq": 1, "pool": "p", "result": {"seq": 1}}, JPEG, "must have no payload"),
        ({"after_seq": 1, "pool": "p"}, JPEG, "must have no payload"),
        ({"after_seq": 1, "pool": "p", "result": {"seq": 1, "width": 4, "height": 4}}, b"", "not a JPEG"),
        ({"after_seq": 1, "pool": "p", "result": {"seq": 1, "width": 4}}, JPEG, "missing field 'height'"),
        ({"after_seq": 1, "pool": "p", "result": {"seq": 1, "meta": {"\n": 1}}}, b"", "'meta' key"),
        ({"after_seq": 1, "member": "m1"}, b"", "a 'member' needs a 'pool'"),
        ({"after_seq": 1, "pool": "p", "member": "m 1"}, b"", "member token 'm 1' is invalid"),
        ({"after_seq": 1, "pool": "p", "member": "m" * 65}, b"", "is invalid: use 1-64 of"),
        ({"after_seq": 1, "pool": "p", "member": 7}, b"", "field 'member' must be str"),
    ],
)
def test_a_malformed_pool_request_is_refused_naming_the_field(
    header: dict[str, object], payload: bytes, problem: str
) -> None:
    with pytest.raises(ProtocolError, match=problem.replace("(", r"\(")):
        decode(raw(Kind.PULL_REQUEST, header, payload))


# ----------------------------------------------------------------------------- the pull server


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(0)


@pytest.fixture
def server(ctx: zmq.Context) -> Iterator[PullServer]:
    pull = PullServer(ctx, "tcp://127.0.0.1:*", CAMERA, status_interval=0.2)
    pull.start()
    yield pull
    pull.stop()


def frame(seq: int) -> bytes:
    return encode_frame(FrameHeader(CAMERA, seq, 1_000 + seq, 2_000 + seq, 8, 8), JPEG)


def member(ctx: zmq.Context, server: PullServer) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    return sock


def received(sock: zmq.Socket, timeout_ms: int = TIMEOUT_MS) -> int:
    """The seq of the frame the node hands this socket (fails after the timeout)."""
    assert sock.poll(timeout_ms), "no frame handed out"
    message = decode(sock.recv())
    assert isinstance(message, Frame)
    return message.header.seq


def nothing_for(sock: zmq.Socket, ms: int = 300) -> bool:
    return not sock.poll(ms)


def offer(server: PullServer, seq: int) -> None:
    server.offer_frame(seq, frame(seq))


def asked(server: PullServer, count: int) -> None:
    """Wait until the server holds `count` waiting requests (its thread reads them)."""
    wait_until(lambda: len(server._pending) >= count, TIMEOUT_MS / 1000, f"{count} requests waiting")


def test_each_frame_goes_to_one_member_and_plain_pullers_still_get_every_frame(
    ctx: zmq.Context, server: PullServer
) -> None:
    a, b, plain = member(ctx, server), member(ctx, server), member(ctx, server)
    a.send(encode_pull_request(-1, "p"))
    b.send(encode_pull_request(-1, "p"))
    plain.send(encode_pull_request(-1))
    asked(server, 3)
    offer(server, 0)
    assert received(plain) == 0
    got_a = not nothing_for(a)
    first, second = (a, b) if got_a else (b, a)
    assert received(first) == 0
    assert nothing_for(second), "frame 0 went to a second member of the pool"
    offer(server, 1)
    assert received(second) == 1  # the member still waiting gets the next frame, not the first again
    plain.send(encode_pull_request(0))
    assert received(plain) == 1


def test_a_member_gets_the_newest_frame_not_yet_handed_to_its_pool(ctx: zmq.Context, server: PullServer) -> None:
    a, b = member(ctx, server), member(ctx, server)
    for seq in (2, 3, 4):
        offer(server, seq)
    a.send(encode_pull_request(-1, "p"))
    assert received(a) == 4  # the newest, not the oldest waiting
    b.send(encode_pull_request(-1, "p"))
    assert nothing_for(b), "frame 4 was handed to a second member"
    offer(server, 5)
    assert received(b) == 5


def pool_stream(ctx: zmq.Context, server: PullServer, name: str) -> zmq.Socket:
    """A subscriber of the pool's stream, found where describe says it is."""

    def described() -> list[CameraInfo]:
        return [i for i in server.pool_infos() if i.camera == f"{CAMERA}/{name}"]

    wait_until(described, TIMEOUT_MS / 1000, "the pool's stream to be described")
    (info,) = described()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(info.endpoint)
    return sub


def next_result(sub: zmq.Socket) -> Frame:
    """The next FRAME on the pool's stream (statuses skipped)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        assert sub.poll(max(1, int((deadline - time.monotonic()) * 1000))), "no result published"
        message = decode(sub.recv())
        if isinstance(message, Frame):
            return message


def test_results_come_back_with_requests_and_go_out_as_one_stream_newest_only(
    ctx: zmq.Context, server: PullServer
) -> None:
    a, b = member(ctx, server), member(ctx, server)
    a.send(encode_pull_request(-1, "p"))
    asked(server, 1)
    sub = pool_stream(ctx, server, "p")
    b.send(encode_pull_request(-1, "p"))
    asked(server, 2)
    offer(server, 10)
    first, second = (a, b) if not nothing_for(a) else (b, a)
    assert received(first) == 10
    offer(server, 10)  # the same frame offered again: still the first member's alone
    assert nothing_for(second)
    offer(server, 11)
    assert received(second) == 11
    holds = {10: first, 11: second}
    # 11 comes back first: published; 10 comes back after it, older: dropped.
    holds[11].send(encode_pull_request(11, "p", PoolResult(11, {"results": {"n": 11}})))
    out = next_result(sub)
    assert out.header.camera == f"{CAMERA}/p"
    assert out.header.meta["source"] == {"camera": CAMERA, "seq": 11}
    assert out.header.meta["results"] == {"n": 11}
    assert out.header.capture_ns == 1_000 + 11  # the source frame's: age is end to end
    assert bytes(out.jpeg) == JPEG  # the node's own JPEG: the member sent none back
    holds[10].send(encode_pull_request(10, "p", PoolResult(10, {"results": {"n": 10}})))
    asked(server, 2)  # both ask again, with or without a result
    offer(server, 12)
    taker = holds[11] if not nothing_for(holds[11]) else holds[10]
    assert received(taker) == 12
    picture = b"\xff\xd8" + b"out" + b"\xff\xd9"
    taker.send(encode_pull_request(12, "p", PoolResult(12, {"results": {"n": 12}}, (4, 2), picture)))
    out = next_result(sub)
    assert out.header.meta["source"]["seq"] == 12, "the late result of frame 10 was published"
    assert (out.header.width, out.header.height, bytes(out.jpeg)) == (4, 2, picture)


def test_a_result_for_a_frame_the_member_does_not_hold_is_dropped(
    ctx: zmq.Context, server: PullServer, caplog: pytest.LogCaptureFixture
) -> None:
    a = member(ctx, server)
    a.send(encode_pull_request(-1, "p", None))
    asked(server, 1)
    a.send(encode_pull_request(-1, "p", PoolResult(99, {"results": {"forged": True}})))
    wait_until(lambda: "which that member does not hold" in caplog.text, TIMEOUT_MS / 1000, "the forged result's line")


def test_a_member_that_stalls_costs_only_its_own_frame(ctx: zmq.Context, server: PullServer) -> None:
    stalled, busy = member(ctx, server), member(ctx, server)
    stalled.send(encode_pull_request(-1, "p"))
    asked(server, 1)
    offer(server, 1)
    assert received(stalled) == 1  # and it never comes back
    for seq in (2, 3, 4):
        busy.send(encode_pull_request(seq - 1, "p", PoolResult(seq - 1, {}) if seq > 2 else None))
        asked(server, 1)
        offer(server, seq)
        assert received(busy) == seq


def test_a_member_gone_before_its_frame_leaves_the_frame_to_another(ctx: zmq.Context, server: PullServer) -> None:
    gone, other = member(ctx, server), member(ctx, server)
    gone.send(encode_pull_request(-1, "p"))
    asked(server, 1)
    gone.close(0)
    hold(0.2)  # a deliberate gap: the node's ROUTER notices the closed connection
    other.send(encode_pull_request(-1, "p"))
    asked(server, 2)
    offer(server, 7)
    assert received(other) == 7  # the send to the gone member failed: the frame was still there


@pytest.mark.parametrize("limit", ["MAX_POOLS", "MAX_MEMBERS"])
def test_pools_and_members_are_bounded_with_one_line(
    ctx: zmq.Context, server: PullServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    monkeypatch.setattr(pools, limit, 2)
    caplog.set_level(logging.WARNING)
    socks = [member(ctx, server) for _ in range(5)]
    for i, sock in enumerate(socks):
        sock.send(encode_pull_request(-1, f"p{i}" if limit == "MAX_POOLS" else "p"))
    wait_until(lambda: len(server._pending) >= 2 and "refused" in caplog.text, TIMEOUT_MS / 1000, "the refusal")
    hold(0.2)  # a deliberate gap: the refused requests have been read too
    assert len(server._pending) == 2
    lines = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1, "one rate-limited line, not one per request"
    assert ("2 pools already" if limit == "MAX_POOLS" else "has 2 members already") in lines[0].getMessage()


def test_a_flooding_member_is_rate_limited(
    ctx: zmq.Context, server: PullServer, caplog: pytest.LogCaptureFixture
) -> None:
    flood = member(ctx, server)
    for _ in range(pools.REQUEST_BURST * 4):
        flood.send(encode_pull_request(-1, "p"))
    wait_until(lambda: "asks more than" in caplog.text, TIMEOUT_MS / 1000, "the rate limit's line")
    assert server._thread.is_alive()


def test_a_pool_stream_id_that_would_be_invalid_is_refused(ctx: zmq.Context, caplog: pytest.LogCaptureFixture) -> None:
    pull = PullServer(ctx, "tcp://127.0.0.1:*", "a/b/c/d")
    pull.start()
    try:
        sock = member(ctx, pull)
        sock.send(encode_pull_request(-1, "p"))
        wait_until(lambda: "pool p refused" in caplog.text, TIMEOUT_MS / 1000, "the refusal's line")
        assert not pull.pool_infos()
    finally:
        pull.stop()


# ----------------------------------------------------------------------------- real members


def results(probe_output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in probe_output.splitlines() if line.startswith("{")]


def test_members_share_a_camera_and_a_consumer_reads_one_stream(nodes: Processes, tmp_path: object) -> None:
    _, control = nodes.capture("--camera-id", CAMERA, "--width", "320", "--height", "240", "--fps", "20")
    handler = "tests.support.handlers_for_tests:slow"  # 0.2 s a frame: one member takes at most 5 of 20 fps
    cli = nodes.worker(
        "process", "--node", control, "--camera", CAMERA, "--handler", handler, "--pool", "faces", "--name", "cli"
    )
    script = (
        "from framebus import processing\n"
        "from tests.support.handlers_for_tests import slow\n"
        f"processing.run(slow, node={control!r}, camera={CAMERA!r}, pool='faces')\n"
    )
    api = nodes.start_argv([sys.executable, "-c", script])
    probe = nodes.start("tests.support.pool_probe", [control, f"{CAMERA}/faces", "4"])
    probe.wait_for("probe: done", 40)
    rows = results(probe.output)
    seqs = [r["seq"] for r in rows]
    assert len(seqs) >= 10, probe.output
    assert len(set(seqs)) == len(seqs), "a frame was processed twice"
    assert seqs == sorted(seqs), "the stream went back in time"
    members = {str(r["member"]).split("@")[0] for r in rows}
    assert members == {"cli", "process-worker"}, members  # both members' results, in one stream
    assert all("age_ms" in dict(r["results"]) for r in rows)  # type: ignore[arg-type]
    for proc in (cli, api):
        assert proc.stop(signal.SIGINT) < 5
        assert "Traceback" not in proc.output


@pytest.mark.parametrize(
    ("camera", "name", "said"),
    [
        ("cam1", "a b", "pool name 'a b' is invalid"),
        ("cam1", "..", "pool name '..' is invalid"),
        ("cam1", "x" * 65, "is invalid: use 1-64 of"),
        ("a/b/c/d", "faces", "camera 'a/b/c/d' has 4 parts already"),
    ],
)
def test_a_bad_pool_name_gets_one_clear_line(nodes: Processes, camera: str, name: str, said: str) -> None:
    handler = "tests.support.handlers_for_tests:slow"
    worker = nodes.worker(
        "process", "--node", "tcp://127.0.0.1:5555", "--camera", camera, "--handler", handler, "--pool", name
    )
    assert worker.wait_exit(20) == 2
    lines = [line for line in worker.lines if line.strip()]
    assert len(lines) == 1 and said in lines[0], worker.output
    with pytest.raises(ValueError, match=said.replace("(", r"\(")):
        process.ProcessOptions(("tcp://127.0.0.1:5555",), (camera,), pool=name)


def test_a_silent_member_lapses_and_an_empty_pool_closes_with_its_stream(
    ctx: zmq.Context, server: PullServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pools, "LEASE_S", 0.3)
    monkeypatch.setattr(pools, "POOL_IDLE_S", 0.6)
    a = member(ctx, server)
    a.send(encode_pull_request(-1, "p"))
    asked(server, 1)
    offer(server, 1)
    assert received(a) == 1  # and then it goes silent, holding frame 1
    sub = pool_stream(ctx, server, "p")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:  # the stream says why nothing comes, once the member lapsed
        assert sub.poll(max(1, int((deadline - time.monotonic()) * 1000))), "no status on the pool's stream"
        message = decode(sub.recv())
        if getattr(message, "reason", "") == "pool p has no members":
            break
    wait_until(lambda: not server.pool_infos(), TIMEOUT_MS / 1000, "the empty pool to close")
    offer(server, 2)
    a.send(encode_pull_request(1, "p", PoolResult(1, {"results": {}})))  # too late: dropped, and a joins anew
    assert received(a) == 2
    b = member(ctx, server)
    b.send(encode_pull_request(-1, "p"))
    assert nothing_for(b)
    offer(server, 3)
    assert received(b) == 3
    assert [i.camera for i in server.pool_infos()] == [f"{CAMERA}/p"]


def test_a_hostile_member_costs_a_few_log_lines_and_the_pool_goes_on(nodes: Processes, ctx: zmq.Context) -> None:
    """Endless pool names, a request flood, forged and oversized results, a 4 MiB request: the
    node refuses each with a rate-limited line, and a real member's results still go out."""
    node, control = nodes.capture("--camera-id", CAMERA, "--width", "320", "--height", "240", "--fps", "20")
    (info,) = [c for c in describe(ctx, control, 10).cameras if c.camera == CAMERA]
    rogue = ctx.socket(zmq.DEALER)
    rogue.setsockopt(zmq.LINGER, 0)
    rogue.connect(info.pull_endpoint)
    rogue.send(encode_pull_request(-1, "held"))
    assert rogue.poll(TIMEOUT_MS * 2)
    held = decode(rogue.recv())
    assert isinstance(held, Frame)
    big_meta = {f"k{i}": i for i in range(256)}  # 256 keys: with the node's `source`, one too many
    rogue.send(encode_pull_request(held.header.seq, "held", PoolResult(held.header.seq, big_meta)))
    for i in range(40):
        rogue.send(encode_pull_request(-1, f"pool{i}"))
    for _ in range(200):
        rogue.send(encode_pull_request(-1, "held", PoolResult(123456, {"forged": 1})))
    rogue.send(encode_pull_request(-1, "held", PoolResult(1, {}, (8, 8), b"\xff\xd8" + bytes(4 << 20) + b"\xff\xd9")))
    for said in ("pools already", "asks more than", "does not hold", "result not published: frame header"):
        node.wait_for(said, 20)
    # All 16 pools are taken (the bound holds until they idle out): a real member joins one.
    member_ = nodes.worker(
        "process",
        "--node",
        control,
        "--camera",
        CAMERA,
        "--handler",
        "tests.support.handlers_for_tests:slow",
        "--pool",
        "held",
    )
    probe = nodes.start("tests.support.pool_probe", [control, f"{CAMERA}/held", "2"])
    probe.wait_for("probe: done", 40)
    assert len(results(probe.output)) >= 5, probe.output
    assert node.proc.poll() is None and "Traceback" not in node.output
    refusals = [line for line in node.lines if "pools already" in line]
    assert len(refusals) == 1, "refusals are rate-limited"
    assert member_.stop(signal.SIGINT) < 5


def test_a_pool_through_a_relay(nodes: Processes) -> None:
    """The relay re-serves cameras with the same pull server: members of a pool on the relay's
    camera `site1/door` share its frames, and the relay describes `site1/door/faces`."""
    _, node = nodes.capture("--camera-id", CAMERA, "--width", "320", "--height", "240", "--fps", "20")
    relay = nodes.worker("relay", "--control", "tcp://127.0.0.1:*", "--node", f"site1={node}")
    control = relay.wait_for(r"control endpoint (\S+),").group(1)
    relay.wait_for(r"camera \S+: relayed on")
    camera = f"site1/{CAMERA}"
    handler = "tests.support.handlers_for_tests:slow"
    members = [
        nodes.worker(
            "process", "--node", control, "--camera", camera, "--handler", handler, "--pool", "faces", "--name", f"r{i}"
        )
        for i in range(2)
    ]
    probe = nodes.start("tests.support.pool_probe", [control, f"{camera}/faces", "3"])
    probe.wait_for("probe: done", 40)
    rows = results(probe.output)
    seqs = [r["seq"] for r in rows]
    assert len(seqs) >= 8 and len(set(seqs)) == len(seqs), probe.output
    assert {str(r["member"]).split("@")[0] for r in rows} == {"r0", "r1"}
    for member_ in members:
        assert member_.stop(signal.SIGINT) < 5
