"""Relays chained (site -> region) with CURVE on every hop: each relay is a client of what it
reads (its own key, the upstream's server key) and a server with its own allow-list."""

from __future__ import annotations

from pathlib import Path

import zmq

from framebus.worker_node.access import Access
from framebus.worker_node.discovery import describe
from tests.support.processes import Processes
from tests.test_relay import receive, start_relay
from tests.test_security import keys_cli


def test_a_two_relay_chain_with_curve_on_every_hop(nodes: Processes, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    for name in ("edge", "site", "region", "worker", "stranger"):
        keys_cli("generate", str(keys), "--name", name)
    for server, client in (("edge", "site"), ("site", "region"), ("region", "worker")):
        keys_cli("allow", str(tmp_path / f"{server}-allowed"), str(keys / f"{client}.key"))

    def secure(me: str, upstream: str | None = None) -> list[str]:
        served = ["--key", str(keys / f"{me}.key_secret"), "--allow", str(tmp_path / f"{me}-allowed")]
        return served + (["--server-key", str(keys / f"{upstream}.key")] if upstream else [])

    _, edge = nodes.capture("--camera-id", "door", "--fps", "10", "--width", "160", *secure("edge"))
    _, site = start_relay(nodes, "--node", f"site1={edge}", "--name", "site", *secure("site", "edge"))
    region_relay, region = start_relay(nodes, "--node", f"east={site}", "--name", "region", *secure("region", "site"))

    worker = Access.from_files(keys / "worker.key_secret", [keys / "region.key"], [region])
    got = receive([region], ["east/site1/door"], 5, access=worker)
    assert {f.header.width for f in got["east/site1/door"]} == {160}

    # Workers need only the last relay's address and key; a key it does not admit gets nothing.
    stranger = Access.from_files(keys / "stranger.key_secret", [keys / "region.key"], [region])
    with zmq.Context() as ctx:
        try:
            describe(ctx, region, timeout=1.0, security=stranger.client(region))
        except Exception as exc:  # noqa: BLE001 - DiscoveryError: what is asserted is the refusal below
            assert "no describe reply" in str(exc)
        else:
            raise AssertionError("the region relay answered a key that is not in its allow-list")
    region_relay.wait_for(r"refused a connection from .* its key .* is not in the allow-list")
