"""Hosts as Linux network namespaces on one machine: separate network stacks, real TCP.

    with Network() as net:
        edge = net.add_host("edge")
        worker = net.add_host("worker")
        edge.limit_rate("13mbit")           # tc tbf on edge's link (netem is not available here)
        proc = worker.popen([...])          # runs inside worker's namespace
        worker.link_down(); worker.link_up()

Every host hangs off one bridge (in a namespace of its own, so nothing touches the machine's
real network). Used by the tests and by deploy/netns-demo.sh; needs root and iproute2.
Everything is deleted on exit, also when a test fails.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Sequence
from types import TracebackType

_networks = itertools.count()


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Host:
    def __init__(self, network: Network, name: str, namespace: str, address: str, switch_port: str) -> None:
        self.network = network
        self.name = name
        self.namespace = namespace
        self.address = address
        self._switch_port = switch_port

    def command(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(argv), text=True, **kwargs)  # type: ignore[call-overload]

    def run(self, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(argv), text=True, capture_output=True, timeout=timeout, check=True)

    def link_down(self) -> None:
        """Cut this host off (its cable is pulled: the switch port goes down)."""
        ip("-n", self.network.switch, "link", "set", self._switch_port, "down")

    def link_up(self) -> None:
        ip("-n", self.network.switch, "link", "set", self._switch_port, "up")

    def refuse_incoming(self) -> None:
        """Nobody can open a connection to this host (as behind NAT); it can still connect out."""
        for rule in (
            ["add", "table", "inet", "nat_like"],
            ["add", "chain", "inet", "nat_like", "input", "{ type filter hook input priority 0; policy accept; }"],
            ["add", "rule", "inet", "nat_like", "input", "iifname", "eth0", "ct", "state", "new", "drop"],
        ):
            ip("netns", "exec", self.namespace, "nft", *rule)

    def limit_rate(self, rate: str) -> None:
        """Limit what this host sends. `burst` must hold a packet; 200 ms of queue (less
        overflowed under BBR in measurements)."""
        ip(
            "netns",
            "exec",
            self.namespace,
            "tc",
            "qdisc",
            "replace",
            "dev",
            "eth0",
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "32kbit",
            "latency",
            "200ms",
        )

    def unlimit_rate(self) -> None:
        ip("netns", "exec", self.namespace, "tc", "qdisc", "del", "dev", "eth0", "root")


class Network:
    def __init__(self) -> None:
        index = next(_networks)
        self.prefix = f"fb{os.getpid() % 100000}n{index}"
        self.subnet = f"10.{200 + (os.getpid() % 50)}.{index % 250}"
        self.switch = f"{self.prefix}-sw"
        self.hosts: list[Host] = []
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def add_host(self, name: str) -> Host:
        number = len(self.hosts) + 2
        namespace = f"{self.prefix}-{name}"
        port = f"p{number}"
        ip("netns", "add", namespace)
        ip("link", "add", f"{self.prefix}{port}", "type", "veth", "peer", "name", f"{self.prefix}h{number}")
        ip("link", "set", f"{self.prefix}{port}", "netns", self.switch)
        ip("-n", self.switch, "link", "set", f"{self.prefix}{port}", "name", port)
        ip("-n", self.switch, "link", "set", port, "master", "br0")
        ip("-n", self.switch, "link", "set", port, "up")
        ip("link", "set", f"{self.prefix}h{number}", "netns", namespace)
        ip("-n", namespace, "link", "set", f"{self.prefix}h{number}", "name", "eth0")
        address = f"{self.subnet}.{number}"
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        host = Host(self, name, namespace, address, port)
        self.hosts.append(host)
        return host

    def close(self) -> None:
        for namespace in [h.namespace for h in self.hosts] + [self.switch]:
            subprocess.run(["ip", "netns", "pids", namespace], capture_output=True)
            for pid in subprocess.run(
                ["ip", "netns", "pids", namespace], capture_output=True, text=True
            ).stdout.split():
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()
