"""`worker-node relay`: one uplink per camera, one address for many sites.

The relay subscribes to many capture nodes (or to other relays: they chain) and serves their
cameras again with the same protocol, under one control endpoint: describe, a conflated PUB and
a pull endpoint per camera, every-frame delivery where the source has it. Camera ids get the
node's name in front (`site1/door`), so that two sites' `door`s do not collide. However many
workers read from the relay, each camera's edge sends one copy: the relay is the node's one
subscriber, and libzmq fans the frame out on the relay's side of the link.

    worker-node relay --node site1=tcp://edge1:5555 --node site2=tcp://edge2:5555 \\
        --control tcp://0.0.0.0:6000 --key relay.key_secret --server-key edge.key --allow workers/

Each upstream node is read by a Driver of its own (worker_node.sink) in its own thread, with
its own FrameReceiver (two nodes' `door`s are two cameras) and a RelaySink that publishes
(worker_node.relay_streams). Frames are forwarded as they came: no JPEG is decoded or encoded.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import re
import select
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from framebus.common import threads
from framebus.common.cli_args import arg_type, endpoint_arg
from framebus.common.control import ControlServer
from framebus.common.endpoint import parse_endpoint
from framebus.common.fields import validate_camera_id
from framebus.common.protocol import MAX_CAMERAS, CameraInfo
from framebus.common.security import CurveFiles, CurveServer, check_exposure
from framebus.common.shutdown import ShutdownSignals
from framebus.common.threads import WatchedThread
from framebus.common.waker import Waker
from framebus.worker_node import flags, metrics
from framebus.worker_node.access import Access
from framebus.worker_node.relay_streams import RelaySink, Slots, Upstream
from framebus.worker_node.sink import Driver, ReceiveOptions
from framebus.worker_node.subscription import Subscription

log = logging.getLogger("worker_node.relay")

DEFAULT_CONTROL = "tcp://127.0.0.1:5580"
DEFAULT_PER_NODE = 32
MAX_UPSTREAMS = 64
STARTUP_WAIT_S = 5.0  # describe waits this long at most for the nodes' cameras
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_.\-]+")


def validate_node_name(name: str) -> str:
    """A node name is one part of a camera id (no '/'): it goes in front of every camera's id."""
    try:
        if "/" in name:
            raise ValueError
        return validate_camera_id(name)
    except ValueError:
        raise ValueError(
            f"node name {name[:80]!r} is invalid: use 1-64 of [A-Za-z0-9_.-] (it goes in front of its cameras' ids)"
        ) from None


def default_name(endpoint: str) -> str:
    """tcp://edge1.example:5555 -> edge1.example; ipc:///run/fb/node -> node."""
    parsed = parse_endpoint(endpoint)
    text = parsed.host if parsed.scheme == "tcp" else parsed.path.rstrip("/").rsplit("/", 1)[-1]
    return _NOT_A_NAME.sub("-", text).strip("-.")[:64] or "node"


def parse_upstream(text: str, listen: bool = False) -> Upstream:
    """`NAME=ENDPOINT` or `ENDPOINT` (the name is then the endpoint's host); --listen needs a name."""
    name, sep, endpoint = text.partition("=")
    if not sep:
        if listen:
            raise ValueError(f"{text!r}: give the name of the node that connects here, e.g. site3=tcp://0.0.0.0:7001")
        name, endpoint = "", text
    checked = str(parse_endpoint(endpoint, "listen" if listen else "node", bind=listen))
    return Upstream(validate_node_name(name) if sep else default_name(checked), checked, listen)


def parse_listen(text: str) -> Upstream:
    return parse_upstream(text, listen=True)


@dataclass(frozen=True)
class RelayOptions:
    upstreams: tuple[Upstream, ...]
    control: str = DEFAULT_CONTROL  # where workers ask; the streams take the ports after it
    name: str = "relay"  # the node name workers see
    pull: bool = False  # pull upstream, where a node offers it (slow links)
    per_node: int = DEFAULT_PER_NODE  # cameras relayed per upstream node (port pairs reserved)
    access: Access = field(default_factory=Access)  # how to reach the nodes: this relay's key, theirs
    curve: CurveFiles | None = None  # this relay's key and the workers it admits
    insecure: bool = False  # without curve, serve on addresses other hosts can reach

    def __post_init__(self) -> None:
        """Raises ValueError naming what is wrong."""
        if not self.upstreams:
            raise ValueError("give at least one --node (or --listen) to relay")
        if len(self.upstreams) > MAX_UPSTREAMS:
            raise ValueError(f"{len(self.upstreams)} upstream nodes: at most {MAX_UPSTREAMS}")
        seen: dict[str, str] = {}
        for upstream in self.upstreams:
            other = seen.setdefault(upstream.name, upstream.endpoint)
            if other != upstream.endpoint:
                raise ValueError(
                    f"node name {upstream.name!r} is given to {other} and to {upstream.endpoint}: "
                    "name them apart (--node NAME=ENDPOINT)"
                )
            if upstream.listen:
                check_exposure(
                    "--listen",
                    parse_endpoint(upstream.endpoint, bind=True),
                    secured=self.access.keys is not None,
                    insecure=self.insecure,
                    fix="Give --key and --server-key",
                )
        if not 1 <= self.per_node <= MAX_CAMERAS:
            raise ValueError(f"--streams-per-node must be between 1 and {MAX_CAMERAS}, got {self.per_node}")
        control = parse_endpoint(self.control, "control", bind=True)
        if check_exposure(
            "--control", control, secured=self.curve is not None, insecure=self.insecure, fix="Give --key and --allow"
        ):
            log.warning("INSECURE: control %s: no CURVE keys; relayed streams go out in plaintext to anyone", control)


class Relay:
    """Binds the control endpoint at once (errors raise here); run() relays until stopped."""

    def __init__(self, options: RelayOptions) -> None:
        self.options = options
        self._ctx = zmq.Context()  # the served side's; each upstream's driver has its own
        self._security: CurveServer | None = None
        self._ready = Waker()  # a node's cameras are known
        try:
            self._security = options.curve.server(self._ctx) if options.curve else None
            self._sinks = [
                RelaySink(
                    self._ctx,
                    upstream,
                    Slots(options.control, index, options.per_node),
                    self._security,
                    self._ready.wake,
                )
                for index, upstream in enumerate(options.upstreams)
            ]
            self._control = ControlServer(self._ctx, options.control, options.name, self.infos, self._security)
        except BaseException:
            self._close_context()
            raise
        self.endpoint = self._control.endpoint
        self._drivers = [Driver([sink], self._receive(sink.upstream)) for sink in self._sinks]
        self._threads = [
            WatchedThread(driver.run, f"relay-{sink.upstream.name}")
            for driver, sink in zip(self._drivers, self._sinks, strict=True)
        ]

    def _receive(self, upstream: Upstream) -> ReceiveOptions:
        if upstream.listen:
            return ReceiveOptions((), listen=(upstream.endpoint,), access=self.options.access)
        # Read by the driver's own thread, not the pump: forwarding never holds up its loop.
        return ReceiveOptions((upstream.endpoint,), pull=self.options.pull, access=self.options.access, pump=False)

    def infos(self) -> list[CameraInfo]:
        """Every relayed camera (from the control thread)."""
        return list(itertools.chain.from_iterable(sink.infos() for sink in self._sinks))[:MAX_CAMERAS]

    def subscriptions(self) -> list[Subscription]:
        """The upstream streams followed now: for metrics."""
        return list(itertools.chain.from_iterable(driver.subscriptions() for driver in self._drivers))

    def run(self, signals: ShutdownSignals) -> None:
        """Until SIGTERM/SIGINT (or a thread's death, which raises one). Describe is answered
        once every node's cameras are known, or after STARTUP_WAIT_S (a node that is down)."""
        for thread in self._threads:
            thread.start()
        self._wait_until_ready(signals)
        self._control.start()
        names = ", ".join(
            f"{u.name}={u.endpoint}" + (" (listening)" if u.listen else "") for u in self.options.upstreams
        )
        log.info("relay %s: control endpoint %s, relaying %s", self.options.name, self.endpoint, names)
        try:
            while not signals.requested:
                signals.wait()
        finally:
            self.close()

    def _wait_until_ready(self, signals: ShutdownSignals) -> None:
        waiter = select.poll()
        for fd in (signals.fd, self._ready.fileno()):
            waiter.register(fd, select.POLLIN)
        deadline = time.monotonic() + STARTUP_WAIT_S
        while not signals.requested and not all(sink.ready for sink in self._sinks):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waiting = ", ".join(s.upstream.name for s in self._sinks if not s.ready)
                log.warning("relay %s: serving before node(s) %s described their cameras", self.options.name, waiting)
                return
            waiter.poll(math.ceil(remaining * 1000))
            self._ready.clear()

    def close(self) -> None:
        for driver in self._drivers:
            driver.stop()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(5.0)
        self._control.stop()
        self._close_context()

    def _close_context(self) -> None:
        self._ready.close()
        if self._security is not None:
            self._security.close()
        self._ctx.destroy(0)


# ---------------------------------------------------------------------------- `worker-node relay`


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    relay = sub.add_parser(
        "relay",
        help="serve many nodes' cameras again under one address",
        description="Subscribe to capture nodes (or other relays) and serve their cameras again, as NAME/CAMERA, "
        "under one control endpoint: each edge sends one copy of a camera however many workers read it. "
        "See docs/relay.md.",
    )
    upstream_flags = (
        ("--node", parse_upstream, "[NAME=]ENDPOINT", "a node's describe endpoint; its cameras are relayed as "
         "NAME/CAMERA (default NAME: the endpoint's host). Repeatable"),
        ("--listen", parse_listen, "NAME=ENDPOINT", "bind ENDPOINT for a node behind NAT that connects out to it "
         "(capture-node --connect); repeatable"),
    )  # fmt: skip
    for flag, parse, metavar, text in upstream_flags:
        relay.add_argument(flag, type=arg_type(parse), action="append", default=[], metavar=metavar, help=text)
    where = f"where workers ask (default {DEFAULT_CONTROL}); the relayed streams take the ports after it"
    relay.add_argument("--control", type=endpoint_arg(True), default=DEFAULT_CONTROL, metavar="ENDPOINT", help=where)
    relay.add_argument("--name", default="relay", help="node name shown to workers (default relay)")
    relay.add_argument("--pull", action="store_true", help="pull frames from the nodes (slow links); see docs/relay.md")
    relay.add_argument(
        "--streams-per-node",
        type=arg_type(flags.positive_int),
        default=DEFAULT_PER_NODE,
        metavar="N",
        help=f"cameras relayed per node; each takes two ports (default {DEFAULT_PER_NODE})",
    )
    flags.add_keys(relay)
    relay.add_argument("--allow", type=Path, help="with --key: serve only the workers whose keys are here")
    relay.add_argument(
        "--insecure",
        action="store_true",
        help="without keys, allow --control or --listen addresses other hosts can reach (plaintext)",
    )
    relay.set_defaults(func=main)
    return relay


def options_from(args: argparse.Namespace) -> RelayOptions:
    """Raises ValueError (KeyFileError: a key file) naming what is wrong."""
    upstreams: Sequence[Upstream] = (*args.node, *args.listen)
    if args.allow and not args.key:
        raise ValueError("--allow needs --key: the relayed streams are served with this relay's key pair")
    if args.key and not args.allow:
        raise ValueError("--key needs --allow: the directory of the workers' public keys this relay admits")
    return RelayOptions(
        tuple(upstreams),
        args.control,
        args.name,
        args.pull,
        args.streams_per_node,
        flags.access(args, [u.endpoint for u in args.node]),
        CurveFiles(args.key, args.allow) if args.allow else None,
        args.insecure,
    )


def main(args: argparse.Namespace) -> int:
    try:
        relay = Relay(options_from(args))
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    except zmq.ZMQError as exc:
        log.error("--control: %s", exc)
        return 2
    if args.metrics_port is not None:
        metrics.register(relay.subscriptions)
    relay.run(ShutdownSignals())
    return 1 if threads.failure() else 0
