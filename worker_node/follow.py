"""Which camera endpoints a worker connects to when a node describes them, and how fast.

A describe reply is only the node's word. Followed blindly, a hostile or broken node can send
every worker that asks it to any `tcp://host:port` (one save worker opened ~4,000 connections a
second to a third party's port) or to any Unix socket on the worker's host. So a worker follows
only endpoints on the host it reached the node at: the same address, an address the node's
host name resolves to, or a wildcard bind (rewritten to that host by discovery); `ipc://` only
from a node reached over `ipc://`. Hosts the user names (`--follow-host`) are followed too. Each
refused endpoint is logged once, and new sockets per node are rationed by a token bucket, so a
node describing hundreds of new streams every round opens them a few per second at most.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Collection

from framebus.common.endpoint import Endpoint, EndpointError, ip_literal, parse_endpoint, parse_host, same_host
from framebus.common.ratelimit import RateLimitedLog, TokenBucket

log = logging.getLogger("worker_node.follow")

BURST = 64  # new sockets a node may make us open at once (a node with 64 cameras starts at once)
PER_SECOND = 8.0  # then this many per second and node
RESOLVE_TTL_S = 60.0  # a node's host name is looked up again after this long
RESOLVE_WAIT_S = 0.5  # the receive loop waits this long for a lookup; later rounds use its answer
REMEMBERED = 1024  # refused endpoints remembered (each is logged once)
LINES_PER_MINUTE = 20  # refusal lines per node and minute; the rest are counted

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_follow_host(text: str) -> str:
    """--follow-host: a host name or address (IPv6 with or without brackets)."""
    return parse_host(text)


class _Lookup:
    """One host name's addresses, looked up in a thread so a slow DNS never stalls frames."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.addresses: frozenset[Address] = frozenset()
        self.done = threading.Event()
        self.started = time.monotonic()
        threading.Thread(target=self._run, name=f"resolve-{host[:32]}", daemon=True).start()

    def _run(self) -> None:
        try:
            infos = socket.getaddrinfo(self.host, None, type=socket.SOCK_STREAM)
            found = {ip_literal(str(info[4][0])) for info in infos}
            self.addresses = frozenset(a for a in found if a is not None)
        except Exception as exc:  # noqa: BLE001 - a failed lookup only means "not that host"
            log.warning("cannot resolve %s (the node's host): %s", self.host, exc)
        finally:
            self.done.set()


class FollowPolicy:
    """The rule above, for one worker. Node endpoints are those the user gave (--node)."""

    def __init__(self, follow_hosts: Collection[str] = (), burst: int = BURST, per_second: float = PER_SECOND) -> None:
        self.follow_hosts = tuple(follow_hosts)
        self._burst = burst
        self._per_second = per_second
        self._lookups: dict[str, _Lookup] = {}
        self._buckets: dict[str, TokenBucket] = {}  # node -> new sockets
        self._reopen_buckets: dict[str, TokenBucket] = {}  # node -> sockets remade for silent streams
        self._refused: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lines: dict[str, list[float]] = {}
        self._log = RateLimitedLog(log, interval=60.0)

    def refusal(self, node: str, endpoint: str, wait_s: float = RESOLVE_WAIT_S) -> str | None:
        """Why `endpoint`, described by `node`, must not be followed; None if it may be."""
        try:
            target = parse_endpoint(endpoint)
        except EndpointError as exc:
            return f"not a usable endpoint: {exc}"
        try:
            reached = parse_endpoint(node)
        except EndpointError:
            return "the node's own endpoint is not one framebus parses"
        if reached.scheme == "ipc":
            if target.scheme == "ipc" or target.is_loopback:
                return None
            return self._unless_allowed(target, "a node reached over ipc:// may only name ipc:// or loopback endpoints")
        if target.scheme == "ipc":
            return "ipc:// names a socket on this host: followed only from a node reached over ipc://"
        if same_host(target.host, reached.host) or self._resolves_to(reached.host, target.host, wait_s):
            return None
        return self._unless_allowed(target, f"not on the host the node was reached at ({reached.host})")

    def admit(self, node: str, camera: str, endpoint: str) -> bool:
        """True if `endpoint` may be followed; a refused one is logged (once)."""
        why = self.refusal(node, endpoint)
        if why is None:
            return True
        self._log_refusal(node, camera, endpoint, why)
        return False

    def may_open(self, node: str) -> bool:
        """Spend one of the node's tokens on a new socket; False (logged, rate-limited): later."""
        return self._take(self._buckets, node, "new", "describes new streams faster than %g a second")

    def may_reopen(self, node: str) -> bool:
        """The same for remaking a silent stream's socket, from a budget of its own: stale
        streams that never recover must not use up the sockets for cameras still to follow."""
        return self._take(self._reopen_buckets, node, "reopen", "has silent streams; remaking at most %g a second")

    def _take(self, buckets: dict[str, TokenBucket], node: str, kind: str, why: str) -> bool:
        bucket = buckets.get(node)
        if bucket is None:
            bucket = buckets[node] = TokenBucket(self._burst, self._per_second)
        if bucket.take():
            return True
        self._log.warning(f"rate-{kind}-{node}", f"node %s {why}; the rest in later rounds", node, self._per_second)
        return False

    def _unless_allowed(self, target: Endpoint, why: str) -> str | None:
        if any(same_host(target.host, host) for host in self.follow_hosts):
            return None
        return f"{why}; --follow-host {target.host} would allow it"

    def _resolves_to(self, name: str, host: str, wait_s: float) -> bool:
        """Is `host` (an address) one of the addresses `name` (the node's host name) has?"""
        address = ip_literal(host)
        if address is None or ip_literal(name) is not None:
            return False  # names from the network are never looked up
        lookup = self._lookups.get(name)
        if lookup is None or (lookup.done.is_set() and time.monotonic() - lookup.started > RESOLVE_TTL_S):
            lookup = self._lookups[name] = _Lookup(name)
        lookup.done.wait(wait_s)
        return address in lookup.addresses

    def _log_refusal(self, node: str, camera: str, endpoint: str, why: str) -> None:
        key = (node, endpoint)
        if key in self._refused:
            self._refused.move_to_end(key)
            return
        self._refused[key] = None
        if len(self._refused) > REMEMBERED:
            self._refused.popitem(last=False)
        now = time.monotonic()
        recent = [t for t in self._lines.get(node, []) if now - t < 60.0]
        if len(recent) >= LINES_PER_MINUTE:
            self._log.warning(f"refused-{node}", "node %s: more described endpoints refused (not all logged)", node)
            return
        self._lines[node] = [*recent, now]
        log.warning("node %s described camera %s at %s: not followed: %s", node, camera, endpoint, why)
