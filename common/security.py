"""CURVE on framebus sockets: a node is the CURVE server of every socket it binds (and of the
connections it makes out to listening workers); workers are clients holding the node's public key.

CURVE without a ZAP handler encrypts but admits any key, so every server Context gets a
ThreadAuthenticator that admits only the keys in the allow-list directory. ZAP runs once per
connection: revoking a key must also drop connections made before, so socket owners rebuild
their sockets when `revocations` changes (allowed peers reconnect within ~0.5 s).
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from framebus.common.endpoint import Endpoint, ListenAddress
from framebus.common.keys import KeyPair, load_key_pair, read_allow_list
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.redact import Public
from framebus.common.threads import WatchedThread
from framebus.common.waker import Waker

log = logging.getLogger("framebus.security")
_MONITOR_IDS = itertools.count()

ZAP_DOMAIN = "framebus"
WATCH_INTERVAL_S = 1.0  # how often the allow-list directory is checked for changes
_EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_MONITOR_STOPPED
_WHY: dict[int, str] = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "it does not use CURVE (a plaintext client, or no --server-key)",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "its handshake does not decrypt (it holds a wrong server key)",
}


class ExposureError(ValueError):
    """A plaintext listener other hosts could reach, without --insecure."""


def check_exposure(name: str, endpoint: Endpoint, *, secured: bool, insecure: bool, fix: str) -> bool:
    """The one rule for every ZeroMQ listener and connect-out target: without CURVE, only this
    host may reach it unless the user said --insecure. Returns True when it is exposed in
    plaintext on purpose (say so at start); raises ExposureError when that was not asked for."""
    if secured or endpoint.is_loopback:
        return False
    if not insecure:
        raise ExposureError(
            f"{name}: {endpoint} can be reached from other hosts, and without CURVE keys anyone there could "
            f"connect. {fix}, or pass --insecure to serve plaintext on purpose (see docs/security.md)"
        )
    return True


def http_exposure_warning(name: str, address: ListenAddress, exposes: str) -> str | None:
    """HTTP listeners have no login: a line to log when other hosts can reach `address`."""
    if address.is_loopback:
        return None
    return f"{name} {address} has no login: anyone who can reach it {exposes} (see docs/security.md)"


class SocketSecurity(Protocol):
    def apply(self, sock: zmq.Socket) -> None:
        """Set the socket's CURVE options; call before bind/connect."""


@dataclass(frozen=True)
class CurveClient:
    """A worker's side: its own key pair and the public key of the node it talks to."""

    keys: KeyPair
    server_key: bytes

    def apply(self, sock: zmq.Socket) -> None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)


class _Authenticator(ThreadAuthenticator):
    """Remembers the peer address of the request being decided, for the refusal log line."""

    peer = ""

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self.peer = msg[3].decode("ascii", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)


class CurveServer:
    """One per zmq.Context that binds: the authenticator, the allow-list and its watcher."""

    def __init__(self, ctx: zmq.Context, keys: KeyPair, allow_dir: Path, announce: bool = True) -> None:
        self.keys = keys
        self._announce = announce  # the node says what its allow-list holds; its camera processes need not repeat it
        self.allow_dir = allow_dir
        self.revocations = 0  # bumped when keys leave the allow-list: rebuild your sockets
        self._listeners: weakref.WeakSet[Waker] = weakref.WeakSet()  # woken at each revocation
        self._ctx = ctx
        self._allowed: frozenset[bytes] = frozenset()
        self._fingerprint: tuple[object, ...] = ()
        self._refused = RateLimitedLog(log, interval=10.0)
        self._reload_now = threading.Event()
        self._stop = threading.Event()
        self._waker = Waker()  # ends the watcher's poll at close()
        self._monitors: list[str] = []
        self._lock = threading.Lock()
        self.reload(initial=True)
        self._auth = _Authenticator(ctx, log=logging.getLogger("framebus.zap"))
        self._auth.start()
        self._auth.configure_curve_callback(ZAP_DOMAIN, self)
        self._thread = WatchedThread(self._watch, "allow-list")  # revocations must not stop silently
        self._thread.start()

    def on_revocation(self, waker: Waker) -> None:
        """Wake `waker` at each revocation (held weakly: a closed socket owner needs no removal)."""
        with self._lock:
            self._listeners.add(waker)

    def _revoke(self) -> None:
        self.revocations += 1
        with self._lock:
            listeners = list(self._listeners)
        for waker in listeners:
            waker.wake()

    def apply(self, sock: zmq.Socket) -> None:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        # Refused handshakes that never reach ZAP (no CURVE, wrong server key) only show up as
        # socket events; the watcher thread reads them.
        with self._lock:
            address = f"inproc://framebus-monitor-{next(_MONITOR_IDS)}"
            sock.monitor(address, _EVENTS)
            self._monitors.append(address)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: admit a CURVE client whose public key is in the allow-list."""
        if key in self._allowed:
            return True
        self._refused.warning(
            key.decode("ascii", "replace"),
            "refused a connection from %s: its key %s is not in the allow-list %s",
            self._auth.peer,
            Public(key.decode("ascii", "replace")),
            self.allow_dir,
        )
        return False

    def request_reload(self) -> None:
        """Re-read the allow-list now (SIGHUP); it is also re-read whenever it changes."""
        self._reload_now.set()

    def reload(self, initial: bool = False) -> None:
        keys, problems = read_allow_list(self.allow_dir)
        for problem in problems:
            log.error("allow-list: %s; that file is ignored", problem)
        allowed = frozenset(keys.values())
        removed = self._allowed - allowed
        self._allowed = allowed
        if initial and not self._announce:
            pass
        elif initial and not allowed:
            log.warning(
                "allow-list %s: no keys, so no worker is admitted; add one with `framebus-keys allow %s WORKER.key`",
                self.allow_dir,
                self.allow_dir,
            )
        elif initial:
            log.info("allow-list %s: %d key(s)", self.allow_dir, len(allowed))
        elif removed:
            self._revoke()
            log.warning(
                "allow-list %s: %d key(s) revoked, %d allowed; dropping connections so every peer is checked again",
                self.allow_dir,
                len(removed),
                len(allowed),
            )
        else:
            log.info("allow-list %s: reloaded, %d key(s)", self.allow_dir, len(allowed))

    def _changed(self) -> bool:
        try:
            entries = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in self.allow_dir.iterdir())
        except OSError:
            entries = []
        fingerprint = tuple(entries)
        changed = fingerprint != self._fingerprint
        self._fingerprint = fingerprint
        return changed

    def _watch(self) -> None:
        self._changed()
        poller = zmq.Poller()
        poller.register(self._waker, zmq.POLLIN)
        monitors: dict[zmq.Socket, str] = {}
        try:
            self._watch_loop(poller, monitors)
        except zmq.ContextTerminated:
            pass  # the owner destroyed the context without close(): nothing left to watch
        finally:
            for sock in monitors:
                sock.close(0)

    def _watch_loop(self, poller: zmq.Poller, monitors: dict[zmq.Socket, str]) -> None:
        while not self._stop.is_set():
            for sock in self._connect_new_monitors(monitors):
                poller.register(sock, zmq.POLLIN)
            for sock in dict(poller.poll(int(WATCH_INTERVAL_S * 1000))):
                if not isinstance(sock, zmq.Socket):
                    continue  # the wake-up: the loop condition ends it
                if self._on_monitor_event(sock):
                    poller.unregister(sock)
                    sock.close(0)
                    del monitors[sock]
            if self._reload_now.is_set() or self._changed():
                self._reload_now.clear()
                try:
                    self.reload()
                except ValueError as exc:  # the directory itself is gone: admit nobody
                    log.error("allow-list: %s; admitting no keys until it is back", exc)
                    if self._allowed:
                        self._allowed = frozenset()
                        self._revoke()

    def _connect_new_monitors(self, monitors: dict[zmq.Socket, str]) -> Iterator[zmq.Socket]:
        with self._lock:
            new, self._monitors = self._monitors, []
        for address in new:
            sock = self._ctx.socket(zmq.PAIR)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(address)
            monitors[sock] = address
            yield sock

    def _on_monitor_event(self, sock: zmq.Socket) -> bool:
        """Log a refused handshake; True when the monitored socket has closed."""
        event = parse_monitor_message(sock.recv_multipart())
        if event["event"] == zmq.EVENT_MONITOR_STOPPED:
            return True
        endpoint = event["endpoint"].decode("ascii", "replace")
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # value is an errno
            why = "it hung up during the handshake (a client without CURVE, or with a wrong key)"
        else:
            why = _WHY.get(int(event["value"]), f"handshake failed (ZeroMQ protocol error {event['value']:#x})")
        self._refused.warning(f"{endpoint}-{event['value']}", "refused a connection on %s: %s", endpoint, why)
        return False

    def close(self) -> None:
        self._stop.set()
        self._waker.wake()
        self._thread.join(2 * WATCH_INTERVAL_S)
        self._auth.stop()
        self._waker.close()


class RevocationCheck:
    """For a socket owner: True once after each revocation, time to rebuild the socket."""

    def __init__(self, server: CurveServer | None, waker: Waker | None = None) -> None:
        """`waker`: woken at each revocation, for an owner that sleeps until something happens."""
        self._server = server
        self._seen = server.revocations if server else 0
        if server is not None and waker is not None:
            server.on_revocation(waker)

    def due(self) -> bool:
        if self._server is None or self._server.revocations == self._seen:
            return False
        self._seen = self._server.revocations
        return True


@dataclass(frozen=True)
class CurveFiles:
    """Where a node's keys live; each process (the node, each camera) loads them itself."""

    key: Path  # the node's .key_secret file
    allow: Path  # directory of admitted peers' .key files

    def server(self, ctx: zmq.Context, announce: bool = True) -> CurveServer:
        return CurveServer(ctx, load_key_pair(self.key), self.allow, announce)
