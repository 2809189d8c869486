"""Frames from every selected camera of one or more capture nodes, newest first.

Cameras are learned through the nodes' describe endpoints, asked again every few seconds so
that cameras added later (or moved after a node restart) are picked up. Describe requests are
asynchronous: a node that is down never blocks frames from the others.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Collection, Sequence

import zmq

from framebus.common.latest import LatestSocket
from framebus.common.protocol import CameraInfo, Frame
from framebus.common.ratelimit import LogBudget, RateLimitedLog
from framebus.common.words import Delivery
from framebus.worker_node.access import Access
from framebus.worker_node.discovery import ClockOffset
from framebus.worker_node.follow import FollowPolicy
from framebus.worker_node.node_control import NodeControl, NodeHealth
from framebus.worker_node.subscription import STALE, STALE_AFTER_S, Subscription

log = logging.getLogger("worker_node.receiver")

REDISCOVER_S = 2.0
FOLLOWS_PER_POLL = 16  # described cameras subscribed to (or checked) per poll
# A stream still silent this long after its node answers again is made anew (libzmq gave up on
# it: a key refused, yet). Sooner would cut a connection that is being made again anyway.
REOPEN_AFTER_S = STALE_AFTER_S
MAX_SUBSCRIPTIONS = 512  # cameras followed at once: a node describing endless new ids cannot exhaust us
OWNER_SILENT_S = 10.0  # a camera's node silent this long: another node may describe it


class FrameReceiver:
    def __init__(
        self,
        ctx: zmq.Context,
        nodes: Sequence[str],
        cameras: Collection[str] = (),
        stale_after_s: float = STALE_AFTER_S,
        pull: bool = False,
        listen: Sequence[str] = (),
        access: Access | None = None,
        pool: str = "",
        pump: bool = True,
    ) -> None:
        """`pool`: pull as a member of that worker pool (cameras without a pull endpoint are
        not followed: every member would get every frame). `pump` False: this receiver's caller
        reads the conflated streams itself (common.sockets.StreamOptions). Raises KeyFileError
        if `access` lacks a server key for one of the nodes."""
        self._ctx = ctx
        self._access = access or Access()
        self._policy = FollowPolicy(self._access.follow_hosts)
        self._wanted = set(cameras)
        self._pull = pull or bool(pool)  # ask for each frame (slow links) instead of subscribing
        self._pool = pool
        self._pump = pump
        self._member = secrets.token_hex(16) if pool else ""  # one credit at each node across its cameras
        self._stale_after = stale_after_s
        self._poller = zmq.Poller()
        self._controls: dict[zmq.Socket, NodeControl] = {}  # control and monitor sockets -> their node
        self.nodes: dict[str, NodeControl] = {}
        self._owner: dict[str, str] = {}  # camera id -> the node it is followed on
        self._last_reply: dict[str, float] = {}  # node -> when it last answered describe
        self.subscriptions: dict[str, Subscription] = {}
        self._by_socket: dict[zmq.Socket | LatestSocket, Subscription] = {}
        self._links: dict[zmq.Socket, Subscription] = {}  # link monitors of pull subscriptions
        for node in nodes:
            self._add_node(NodeControl(ctx, node, self._access.client(node)))
        for endpoint in listen:  # capture nodes behind NAT connect to these
            security, limit = self._access.client(), self._access.max_message_bytes
            self._add(Subscription(ctx, endpoint, listen=True, security=security, max_message_bytes=limit))
            log.info("listening for capture nodes on %s", endpoint)
        self._next_discovery = 0.0
        self.camera_info: dict[str, CameraInfo] = {}  # as the nodes last described them
        self.clock_offsets: dict[str, ClockOffset] = {}  # node -> estimate from describe round trips
        self._log = RateLimitedLog(log, interval=30.0)
        self._changes = LogBudget(log)  # (un)subscriptions: a node describing endless new ids would flood the log
        self._to_follow: dict[str, deque[tuple[str, CameraInfo]]] = {}  # node -> described cameras to follow
        self._described: dict[str, list[str]] = {}  # node -> the camera ids of its last reply
        self._missing_told: set[str] = set()  # wanted cameras no node describes, already said

    def _add_node(self, control: NodeControl) -> None:
        self.nodes[control.node] = control
        for sock in control.sockets:
            self._controls[sock] = control
            self._poller.register(sock, zmq.POLLIN)

    def add_wake_fd(self, fd: int) -> None:
        """Another file descriptor that ends a blocked poll() when readable (a stop request)."""
        self._poller.register(fd, zmq.POLLIN)

    def poll(self, timeout_s: float) -> list[tuple[Subscription, Frame]]:
        """Wait up to timeout_s; return the frames that arrived (at most the newest per
        camera for conflated streams). Returns early, maybe empty, when woken. Work per call
        is bounded on every socket, so that no socket can starve another."""
        now = time.monotonic()
        if now >= self._next_discovery:
            self._ask_nodes()
            self._next_discovery = now + REDISCOVER_S
        self._follow_some()
        wait = 0.0 if self._to_follow else max(0.0, min(timeout_s, self._next_discovery - now))
        for pulled in self.subscriptions.values():
            pulled.request()  # pull mode: the caller is ready for the next frame
            if pulled.awaiting_connection:
                wait = min(wait, 0.1)  # the request could not go out yet: try again soon
        # Rounded up: a wait of 0.9 ms truncated to 0 spun the caller until its deadline.
        ready = dict(self._poller.poll(math.ceil(wait * 1000)))
        frames: list[tuple[Subscription, Frame]] = []
        for sock in ready:
            if (control := self._controls.get(sock)) is not None:
                if control.node in self.nodes:  # not removed by a reply handled before
                    self._on_replies(control)
            elif (sub := self._by_socket.get(sock)) is not None:
                frames.extend((sub, frame) for frame in sub.pending())
            elif (linked := self._links.get(sock)) is not None:
                linked.on_link_events()
        self._mark_stale()
        for control in self.nodes.values():
            control.report()
        return frames

    def node_health(self) -> list[NodeHealth]:
        """Every node asked, answering or not (and why not): for `web` and `top`."""
        return [control.health() for control in self.nodes.values()]

    def _ask_nodes(self) -> None:
        for control in list(self.nodes.values()):
            old = control.sockets
            if control.ask():  # made anew: libzmq had given up on the old socket
                for sock in old:
                    self._poller.unregister(sock)
                    self._controls.pop(sock, None)
                self._add_node(control)

    def _on_replies(self, control: NodeControl) -> None:
        node = control.node
        for reply in control.read():
            clock = ClockOffset.estimate(reply.time_ns, control.asked_ns, time.time_ns())
            self.clock_offsets[node] = clock
            if abs(clock.seconds) > max(0.05, 2 * clock.uncertainty):
                self._log.warning(
                    f"clock-{node}",
                    "node %s: its clock is %+.3f s off ours; frame ages from it are off by as much (sync clocks with NTP)",
                    node,
                    clock.seconds,
                )
            self._last_reply[node] = time.monotonic()
            described = {cam.camera for cam in reply.cameras if self._owns(node, cam.camera)}
            for camera in [c for c, owner in self._owner.items() if owner == node and c not in described]:
                self._changes.info(
                    f"node {node}", "camera %s: node %s no longer describes it; unsubscribed", camera, node
                )
                self._drop(camera)
            # Followed a few per poll (the newest reply replaces what is left of an older one):
            # a reply may list 1024 cameras, and a socket each costs ~1 ms.
            self._to_follow[node] = deque(
                (reply.node, cam)
                for cam in reply.cameras
                if cam.camera in described and (not self._wanted or cam.camera in self._wanted)
            )
            self._described[node] = [cam.camera for cam in reply.cameras]
        self._tell_missing()

    def _tell_missing(self) -> None:
        """A --camera that no answering node describes (a typo, or the wrong node) is said once,
        with what the nodes do have: waiting for it in silence looked like a hang."""
        if not self._wanted or not self._described:
            return
        everywhere = {camera for cameras in self._described.values() for camera in cameras}
        self._missing_told &= self._wanted - everywhere  # found since: say it again if it goes
        for camera in sorted(self._wanted - everywhere - self._missing_told):
            self._missing_told.add(camera)
            has = "; ".join(
                f"{node} has {', '.join(cameras[:10]) or 'no cameras'}{' ...' if len(cameras) > 10 else ''}"
                for node, cameras in self._described.items()
            )
            silent = len(self.nodes) - len(self._described)
            waiting = f" ({silent} node(s) not answering yet)" if silent > 0 else ""
            log.warning("camera %s: no node describes it: %s%s; waiting for it to appear", camera, has, waiting)

    def _follow_some(self) -> None:
        """At most FOLLOWS_PER_POLL described cameras, taken in turn from each node."""
        budget = FOLLOWS_PER_POLL
        while budget > 0 and self._to_follow:
            for node, pending in list(self._to_follow.items()):
                if pending and budget > 0:
                    node_name, cam = pending.popleft()
                    self._follow(node, node_name, cam)
                    budget -= 1
                if not pending:
                    del self._to_follow[node]

    def _answering_for(self, node: str) -> float:
        control = self.nodes.get(node)
        return control.answering_for() if control is not None else 0.0

    def _owns(self, node: str, camera: str) -> bool:
        """A camera id belongs to the first node that described it, while that node still
        answers: another node (a misconfigured or hostile one) cannot take it over."""
        owner = self._owner.get(camera)
        if owner is None or owner == node:
            return True
        if time.monotonic() - self._last_reply.get(owner, 0.0) > OWNER_SILENT_S:
            return True  # the camera moved to another node
        self._log.warning(
            f"conflict-{camera}", "camera %s is described by %s and by %s; keeping %s", camera, owner, node, owner
        )
        return False

    def _follow(self, node: str, node_name: str, cam: CameraInfo) -> None:
        """Subscribe to a described camera, or keep (and if silent, reopen) the subscription."""
        pull = self._pull and bool(cam.pull_endpoint)
        if self._pool and not pull:
            self._log.warning(
                f"pool-{cam.camera}", "camera %s has no pull endpoint: it cannot be shared by pool %s; not followed",
                cam.camera, self._pool,
            )  # fmt: skip
            return
        endpoint = cam.pull_endpoint if pull else cam.endpoint
        every_frame = cam.delivery == Delivery.EVERY_FRAME
        current = self.subscriptions.get(cam.camera)
        if current and current.endpoint == endpoint and current.every_frame == (every_frame and not pull):
            self.camera_info[cam.camera] = cam
            if (
                current.status.state == STALE
                and self._answering_for(node) >= REOPEN_AFTER_S
                and self._policy.may_reopen(node)  # rationed, from a budget of its own
            ):
                self._reopen(current)  # the node answers, its stream does not (a refused key?)
            return
        if not self._policy.admit(node, cam.camera, endpoint):  # another host, ipc://, inproc://: refused, logged once
            return
        if current is None and len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            self._log.warning("full", "%d cameras followed already; camera %s ignored", MAX_SUBSCRIPTIONS, cam.camera)
            return
        if not self._policy.may_open(node):  # a new socket: rationed per node, retried next round
            return
        security, limit = self._access.client(node), self._access.max_message_bytes
        try:
            sub = Subscription(
                self._ctx,
                endpoint,
                cam.camera,
                every_frame,
                pull,
                False,
                security,
                limit,
                self._pool,
                self._member,
                self._pump,
            )
        except zmq.ZMQError as exc:
            self._log.warning(f"endpoint-{node}", "camera %s: cannot connect to %s: %s", cam.camera, endpoint, exc)
            return
        if current:
            self._remove(current)
        self._add(sub)
        self._owner[cam.camera] = node
        self.camera_info[cam.camera] = cam
        mode = "pull" if pull else cam.delivery
        self._changes.info(
            f"node {node}", "camera %s: subscribed to %s (%s) on node %s", cam.camera, endpoint, mode, node_name
        )

    def _drop(self, camera: str) -> None:
        sub = self.subscriptions.get(camera)
        if sub is not None:
            self._remove(sub)
        self._owner.pop(camera, None)
        self.camera_info.pop(camera, None)

    def _add(self, sub: Subscription) -> None:
        self.subscriptions[sub.name] = sub
        self._by_socket[sub.socket] = sub
        self._poller.register(sub.socket, zmq.POLLIN)
        if sub.link_socket is not None:
            self._links[sub.link_socket] = sub
            self._poller.register(sub.link_socket, zmq.POLLIN)

    def _reopen(self, sub: Subscription) -> None:
        self._remove(sub)
        try:
            sub.reopen()
        except zmq.ZMQError as exc:
            self._log.warning(
                f"reopen-{sub.name}", "camera %s: cannot reconnect to %s: %s", sub.name, sub.endpoint, exc
            )
            self._owner.pop(sub.name, None)  # described again, it is subscribed anew
            return
        self._add(sub)

    def _remove(self, sub: Subscription) -> None:
        self._poller.unregister(sub.socket)
        del self._by_socket[sub.socket]
        if sub.link_socket is not None:
            self._poller.unregister(sub.link_socket)
            del self._links[sub.link_socket]
        self.subscriptions.pop(sub.name, None)
        sub.close()

    def _mark_stale(self) -> None:
        for sub in self.subscriptions.values():
            if sub.mark_stale_if_silent(
                self._stale_after
            ):  # budgeted per node: a node can describe 1024 silent cameras
                node = f"node {self._owner.get(sub.name, sub.endpoint)}"
                self._changes.warning(node, "camera %s: stale, %s", sub.name, sub.status.reason)

    def close(self) -> None:
        for sub in self.subscriptions.values():
            if isinstance(sub.socket, LatestSocket):
                sub.socket.begin_close()  # all at once: one pump round trip for hundreds of streams
        for sub in list(self.subscriptions.values()):
            self._remove(sub)
        for control in self.nodes.values():
            control.close()
