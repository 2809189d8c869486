"""Whose turn it is, across the cameras of one process: a pool member that gives a token (the
same on its requests to every camera) holds ONE credit for all of them, not one per camera, and
each time it is free it gets the frame of the camera its pool has had the fewest frames of.

Why: with a credit per camera, a member of a pool over 8 cameras is handed 8 frames at once and
handles them in turn, so each frame waits 7 handler runs in the member (measured: 780 ms old at
a 100 ms handler). With one credit, a member is only ever handed a frame when it is free, so the
frame is the newest; and "the camera the pool had the fewest frames of" (then: gone longest
without) is a round robin across the pool's cameras, whoever asks, that skips cameras with
nothing new and makes up for a skip by up to MAX_LAG frames: each camera gets an equal share, or
every frame it makes if it makes fewer (max-min fair), whatever its frame rate.

The cameras' pull servers run in threads of their own and share one `Turns` (the process's,
`TURNS`). Each calls claim() before handing a token member a frame: claim() decides and reserves
under one lock, so a member is never handed two frames, and wakes the camera whose turn it is
when that is another. State is bounded (members per pool, cameras per member, pools) and
expires with the pool lease. docs/pools.md says why, docs/protocol.md 3.6 gives the rules.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from framebus.common.pool import LEASE_S, MAX_MEMBERS
from framebus.common.ratelimit import RateLimitedLog

log = logging.getLogger("framebus.pool")

MAX_CAMERAS_PER_MEMBER = 512  # as many as a worker follows (worker_node.receiver.MAX_SUBSCRIPTIONS)
MAX_SHARED_POOLS = 64  # pools whose members give a token, in one process
# A camera that had nothing new when its turn came (its node stalled, it is slower than its share)
# catches up on at most this many frames afterwards: enough to heal a stall's skips, too few for a
# camera back from an outage to shut the others out.
MAX_LAG = 4


class Seat:
    """A camera as the turns see it: `has_frame(pool)` tells (from any thread) whether it has a
    frame that pool has not had; `wake()` makes its server look at its waiting requests again."""

    def __init__(self, camera: str, has_frame: Callable[[str], bool], wake: Callable[[], None]) -> None:
        self.camera = camera
        self.has_frame = has_frame
        self.wake = wake


@dataclass
class _Member:
    seen: float
    waits_at: set[Seat] = field(default_factory=set)  # cameras where its request is waiting
    holds: Seat | None = None  # the camera whose frame it was handed, until it asks there again
    held_seq: int = -1  # that frame's
    held_by: bytes = b""  # the connection (ROUTER identity) it went out on
    since: float = 0.0


@dataclass
class _SharedPool:
    members: dict[str, _Member] = field(default_factory=dict)  # token -> member
    handed: dict[Seat, int] = field(default_factory=dict)  # camera -> frames the pool had of it (MAX_LAG)
    served: dict[Seat, float] = field(default_factory=dict)  # camera -> when the pool last had its frame

    def owed(self, seat: Seat, top: int) -> int:
        """The camera's place in the turn: frames had, as if at most MAX_LAG behind the most served."""
        return max(self.handed.get(seat, top), top - MAX_LAG)

    def top(self) -> int:
        return max(self.handed.values(), default=0)


class Turns:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[str, _SharedPool] = {}
        self._log = RateLimitedLog(log)

    def wait(self, pool: str, token: str, seat: Seat, after_seq: int, identity: bytes, now: float) -> bool:
        """A request of member `token` waits at `seat`; if it names the frame the member held
        there (`after_seq`: it has it), the member is done with it and free; so it is if the
        request comes on another connection (it connected again: the frame was lost with the
        old one). A request sent again on the same connection while the frame was on its way
        names an older frame, and frees nothing. False: refused (bounds; logged)."""
        wake: list[Seat] = []
        with self._lock:
            shared = self._pools.get(pool)
            if shared is None:
                if len(self._pools) >= MAX_SHARED_POOLS:
                    self._log.warning(
                        "pools", "%d pools with member tokens already; pool %s refused", MAX_SHARED_POOLS, pool
                    )
                    return False
                shared = self._pools[pool] = _SharedPool()
            member = shared.members.get(token)
            if member is None:
                if len(shared.members) >= MAX_MEMBERS:
                    self._log.warning(
                        f"members-{pool}", "pool %s has %d member tokens already; a request refused", pool, MAX_MEMBERS
                    )
                    return False
                member = shared.members[token] = _Member(now)
            if seat not in member.waits_at and len(member.waits_at) >= MAX_CAMERAS_PER_MEMBER:
                self._log.warning(
                    f"cameras-{pool}",
                    "camera %s: a member of pool %s asks on more than %d cameras; its request there refused",
                    seat.camera, pool, MAX_CAMERAS_PER_MEMBER,
                )  # fmt: skip
                return False
            member.seen = now
            member.waits_at.add(seat)
            if seat not in shared.handed:  # a camera new to the pool queues behind the others
                shared.handed[seat], shared.served[seat] = shared.top(), now
            if member.holds is seat and (after_seq == member.held_seq or identity != member.held_by):
                member.holds = None
                wake += self._turn_of(pool, shared, member)
        self._wake(wake)
        return True

    def unwait(self, pool: str, token: str, seat: Seat) -> None:
        """The member's request at `seat` is answered, expired or dropped."""
        with self._lock:
            shared = self._pools.get(pool)
            member = shared.members.get(token) if shared is not None else None
            if member is not None:
                member.waits_at.discard(seat)

    def claim(self, pool: str, token: str, seat: Seat, seq: int, identity: bytes, now: float) -> bool:
        """May the member be handed `seat`'s frame `seq` now? Yes if it holds no frame and `seat`
        is its turn; then it holds it from now (release() if the frame could not be sent). If the
        turn is another camera's, that camera is woken to hand it out."""
        wake: list[Seat] = []
        with self._lock:
            shared = self._pools.get(pool)
            member = shared.members.get(token) if shared is not None else None
            if shared is None or member is None or member.holds is not None:
                return False
            turn = self._turn_of(pool, shared, member)
            mine = turn == [seat]
            if mine:
                member.holds, member.held_seq, member.held_by, member.since = seat, seq, identity, now
                member.waits_at.discard(seat)
                shared.handed[seat] = shared.owed(seat, shared.top()) + 1
                shared.served[seat] = now
            else:
                wake = turn
        self._wake(wake)
        return mine

    def release(self, pool: str, token: str, seat: Seat, still_waits: bool) -> None:
        """The frame claimed for the member could not be sent (that connection is gone): it
        holds nothing, and still waits at `seat` if another request of it waits there (it
        connected again)."""
        with self._lock:
            shared = self._pools.get(pool)
            member = shared.members.get(token) if shared is not None else None
            if member is not None and member.holds is seat:
                member.holds = None
                if still_waits:
                    member.waits_at.add(seat)

    def handed(self, pool: str, seat: Seat) -> None:
        """`seat` handed its frame to a member of `pool`: the free members waiting there for it
        look elsewhere."""
        wake: list[Seat] = []
        with self._lock:
            shared = self._pools.get(pool)
            if shared is None:
                return
            for member in shared.members.values():
                if member.holds is None and seat in member.waits_at:
                    wake += self._turn_of(pool, shared, member)
        self._wake(wake)

    @staticmethod
    def _turn_of(pool: str, shared: _SharedPool, member: _Member) -> list[Seat]:
        """The camera, among those where the member waits and that have a frame the pool has not
        had, of which the pool had the fewest frames (MAX_LAG), then the one it has gone longest
        without: [it], or [] (nothing new anywhere yet)."""
        ready = [seat for seat in member.waits_at if seat.has_frame(pool)]
        top = shared.top()
        return [min(ready, key=lambda seat: (shared.owed(seat, top), shared.served[seat]))] if ready else []

    @staticmethod
    def _wake(seats: list[Seat]) -> None:
        for seat in seats:
            seat.wake()

    def expire(self, now: float) -> None:
        """A frame held past the lease is no longer held (a stalled member: as each camera's own
        lease); members silent that long with no request waiting go; empty pools go."""
        with self._lock:
            for name, shared in list(self._pools.items()):
                for token, member in list(shared.members.items()):
                    if member.holds is not None and now - member.since > LEASE_S:
                        member.holds = None
                    if now - member.seen > LEASE_S and not member.waits_at and member.holds is None:
                        del shared.members[token]
                if not shared.members:
                    del self._pools[name]

    def leave(self, seat: Seat) -> None:
        """The camera's server stops: forget it everywhere."""
        with self._lock:
            for shared in self._pools.values():
                shared.served.pop(seat, None)
                shared.handed.pop(seat, None)
                for member in shared.members.values():
                    member.waits_at.discard(seat)
                    if member.holds is seat:
                        member.holds = None


TURNS = Turns()  # the process's: every pull server in it shares the turns of its pools
