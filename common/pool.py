"""Worker pools on a camera's pull endpoint: N members share one camera's frames, each frame
handed to at most one of them, always the newest one not yet handed to the pool; what they
make of it comes back with their next request and goes out as ONE stream, `<camera>/<pool>`.

Credit-based, like ZeroMQ's load-balancing broker: a member that asks is free, so work goes
only to free members and none ever queues behind a busy one. Nothing is re-queued: a frame
whose member died is simply older than the next one, which another member already has. So a
claim blocks nobody; its lease only bounds how long a silent member counts, and how late its
result may come. Owned by the pull server's thread; `described` and `busy` are read from others.
See docs/pools.md for why, docs/protocol.md 3.6 for the bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from framebus.common.protocol import CameraInfo, Frame, PoolResult, ProtocolError, decode
from framebus.common.ratelimit import RateLimitedLog, TokenBucket
from framebus.common.stream import StreamPublisher
from framebus.common.words import State

log = logging.getLogger("framebus.pool")

MAX_POOLS = 16  # pools per camera: a member naming endless pools cannot open endless sockets
MAX_MEMBERS = 64  # members per pool
LEASE_S = 10.0  # a member that neither asks nor answers this long is gone, and its claim with it
POOL_IDLE_S = 30.0  # a pool without members this long is closed, its stream with it
REQUEST_BURST = 32  # requests of one member at once, then REQUESTS_PER_S
REQUESTS_PER_S = 100.0  # a member asks once per frame it handles: 100 covers a 100 fps handler
RATE_WINDOW_S = 1.0


@dataclass(frozen=True)
class Claim:
    """The frame a member was handed: `ticket` is its place in the pool's hand-out order."""

    ticket: int
    seq: int
    message: bytes  # the FRAME message as sent: its JPEG goes out again with a result that has none


@dataclass
class Member:
    seen: float
    bucket: TokenBucket = field(default_factory=lambda: TokenBucket(REQUEST_BURST, REQUESTS_PER_S))
    claim: Claim | None = None


class Pool:
    def __init__(self, name: str, stream: StreamPublisher, now: float) -> None:
        self.name = name
        self.stream = stream
        self.members: dict[bytes, Member] = {}
        self.handed_seq: int | None = None  # the newest frame handed to a member
        self.tickets = 0  # frames handed out
        self.published = 0  # the ticket of the last result published
        self.late = 0  # results dropped: a newer one was published first
        self.empty_since: float | None = now
        self.closed = False  # its stream is closed: requests still waiting on it are dropped
        self._window = (now, 0)  # (start, results published since)
        self.fps = 0.0

    def rate(self, now: float) -> float:
        start, count = self._window
        if now - start >= RATE_WINDOW_S:
            self.fps = min(1000.0, count / (now - start))
            self._window = (now, 0)
        return self.fps

    def counted(self) -> None:
        start, count = self._window
        self._window = (start, count + 1)


class Pools:
    """The pools of one camera. `open_stream(name)` binds a pool's output stream (raises
    zmq.ZMQError or ValueError if it cannot)."""

    def __init__(self, camera: str, open_stream: Callable[[str], StreamPublisher]) -> None:
        self._camera = camera
        self._open_stream = open_stream
        self._pools: dict[str, Pool] = {}
        self._log = RateLimitedLog(log)
        self.described: tuple[CameraInfo, ...] = ()  # for describe, read from other threads
        self.busy = False  # a member is working: keep frames encoded for its next request

    def admit(self, identity: bytes, name: str, now: float) -> Pool | None:
        """The pool a request joins (made on first use); None if refused (logged, rate-limited)."""
        pool = self._pools.get(name) or self._new_pool(name, now)
        if pool is None:
            return None
        member = pool.members.get(identity)
        if member is None:
            if len(pool.members) >= MAX_MEMBERS:
                self._log.warning(
                    f"members-{name}", "camera %s: pool %s has %d members already; a request refused",
                    self._camera, name, MAX_MEMBERS,
                )  # fmt: skip
                return None
            member = pool.members[identity] = Member(now)
            pool.empty_since = None
        if not member.bucket.take():
            self._log.warning(
                f"rate-{name}", "camera %s: a member of pool %s asks more than %.0f times a second; requests dropped",
                self._camera, name, REQUESTS_PER_S,
            )  # fmt: skip
            return None
        member.seen = now
        self.busy = True
        return pool

    def _new_pool(self, name: str, now: float) -> Pool | None:
        if len(self._pools) >= MAX_POOLS:
            self._log.warning("pools", "camera %s: %d pools already; pool %s refused", self._camera, MAX_POOLS, name)
            return None
        try:
            stream = self._open_stream(name)
        except Exception as exc:  # a bad id (too many parts), no port free: refuse, say why, go on
            self._log.warning(f"open-{name}", "camera %s: pool %s refused: %s", self._camera, name, exc)
            return None
        pool = self._pools[name] = Pool(name, stream, now)
        log.info("camera %s: pool %s opened, results on %s as %s", self._camera, name, stream.endpoint, stream.camera)
        return pool

    def get(self, name: str) -> Pool | None:
        """The pool of that name, if open (from any thread)."""
        return self._pools.get(name)

    def may_hand(self, pool: Pool, seq: int) -> bool:
        """Only the newest frame goes out, and to one member: not the one handed last."""
        return pool.handed_seq != seq

    def handed(self, pool: Pool, identity: bytes, seq: int, message: bytes, now: float) -> None:
        pool.tickets += 1
        pool.handed_seq = seq
        member = pool.members.get(identity)
        if member is None and len(pool.members) < MAX_MEMBERS:  # it waited past its lease
            member = pool.members[identity] = Member(now)
        if member is not None:
            member.seen = now
            member.claim = Claim(pool.tickets, seq, message)

    def gone(self, pool: Pool, identity: bytes) -> None:
        """The member's connection is gone (a send to it failed)."""
        pool.members.pop(identity, None)

    def take_result(self, pool: Pool, identity: bytes, result: PoolResult) -> None:
        """Publish a member's result on the pool's stream, unless a newer one went out first."""
        member = pool.members.get(identity)
        claim = member.claim if member is not None else None
        if claim is None or claim.seq != result.seq:
            self._log.warning(
                f"claim-{pool.name}", "camera %s: pool %s: a result for frame %d, which that member does not hold; dropped",
                self._camera, pool.name, result.seq,
            )  # fmt: skip
            return
        assert member is not None
        member.claim = None
        if claim.ticket <= pool.published:
            pool.late += 1  # another member's result for a newer frame went out first
            return
        pool.published = claim.ticket
        source = decode(claim.message)
        assert isinstance(source, Frame)  # we encoded it
        h = source.header
        meta: dict[str, Any] = {**result.meta, "source": {"camera": h.camera, "seq": h.seq}}
        if result.jpeg is not None and result.size is not None:
            data, size = result.jpeg, result.size
        else:
            data, size = source.jpeg, (h.width, h.height)
        try:
            pool.stream.send_frame(data, size, h.capture_ns, meta=meta)  # conflated: never waits
        except ProtocolError as exc:
            self._log.warning(f"encode-{pool.name}", "pool %s: result not published: %s", pool.stream.camera, exc)
            return
        pool.counted()

    def housekeeping(self, now: float, camera: tuple[State, str], waiting: Collection[bytes] = ()) -> None:
        """Expire silent members (a member whose request waits is not silent) and idle pools;
        say on each stream why no result goes out."""
        for name, pool in list(self._pools.items()):
            for identity, member in list(pool.members.items()):
                if now - member.seen > LEASE_S and identity not in waiting:
                    del pool.members[identity]
            if pool.members:
                pool.empty_since = None
            elif pool.empty_since is None:
                pool.empty_since = now
            elif now - pool.empty_since > POOL_IDLE_S:
                pool.closed = True
                pool.stream.close()
                del self._pools[name]
                log.info("camera %s: pool %s closed (no members for %.0f s)", self._camera, name, POOL_IDLE_S)
                continue
            self._tell_status(pool, camera)
        self.busy = any(pool.members for pool in self._pools.values())
        self.described = tuple(pool.stream.info(pool.rate(now)) for pool in self._pools.values())

    def _tell_status(self, pool: Pool, camera: tuple[State, str]) -> None:
        state, reason = camera
        s = pool.stream
        if state == State.STREAMING:
            if not pool.members:
                state, reason = State.CONNECTING, f"pool {pool.name} has no members"
            elif s.last_frame is None:
                state, reason = State.CONNECTING, "waiting for the first result"
            else:
                reason = f"no result for {s.quiet_for():.1f} s"
        if s.status_due(state):
            s.send_status(state, reason)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.closed = True
            pool.stream.close()
        self._pools.clear()
        self.described = ()
        self.busy = False


def camera_state(message: bytes) -> tuple[State, str]:
    """The state a camera's STATUS message tells (our own encoding: never malformed)."""
    try:
        status = decode(message)
    except ProtocolError:
        return State.STREAMING, ""
    state = getattr(status, "state", State.STREAMING)
    return State(state), getattr(status, "reason", "")
