"""How a worker reaches nodes: its own CURVE key pair, each node's public key, the largest
message it accepts from any of them (ZMQ_MAXMSGSIZE: a wrong or hostile endpoint cannot make
it allocate more), and the hosts besides a node's own that it follows described streams to."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from framebus.common.endpoint import parse_host
from framebus.common.keys import KeyFileError, KeyPair, load_key_pair, load_public_key, secret_file_is_private
from framebus.common.security import CurveClient
from framebus.common.sockets import DEFAULT_MAX_MESSAGE_BYTES

log = logging.getLogger("worker_node.access")
ANY_NODE = ""  # server_keys entry used for nodes not listed (and for --listen)


@dataclass(frozen=True)
class Access:
    keys: KeyPair | None = None
    server_keys: Mapping[str, bytes] = field(default_factory=dict)  # node endpoint (or ANY_NODE) -> key
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    follow_hosts: tuple[str, ...] = ()  # hosts besides a node's own that its described endpoints may name

    def __post_init__(self) -> None:
        """A follow host that is not a host raises EndpointError (a ValueError) naming it."""
        object.__setattr__(self, "follow_hosts", tuple(parse_host(h, "follow host") for h in self.follow_hosts))

    def client(self, node: str = ANY_NODE) -> CurveClient | None:
        """CURVE settings for sockets to `node` and to the streams it describes; None: plaintext."""
        if self.keys is None:
            return None
        server_key = self.server_keys.get(node, self.server_keys.get(ANY_NODE))
        if server_key is None:
            raise KeyFileError(f"no server key for node {node or '(listening)'}: give --server-key for it")
        return CurveClient(self.keys, server_key)

    @classmethod
    def from_files(
        cls,
        key: Path | str | None,
        server_keys: Sequence[Path | str],
        nodes: Sequence[str] = (),
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        follow_hosts: Sequence[str] = (),
    ) -> Access:
        """One server key for every node, or one per node in the order the nodes were given.
        Raises KeyFileError naming the file or flag that is wrong (EndpointError: a follow host)."""
        if bool(key) != bool(server_keys):
            raise KeyFileError(
                "CURVE needs both --key (this worker's .key_secret file) and --server-key (the node's .key file)"
            )
        if not 1024 <= max_message_bytes <= 2**31 - 1:
            raise KeyFileError(f"--max-message-size must be between 1K and 2G, got {max_message_bytes}")
        if not key:
            return cls(max_message_bytes=max_message_bytes, follow_hosts=tuple(follow_hosts))
        pair = load_key_pair(Path(key))
        if not secret_file_is_private(Path(key)):
            log.warning("--key %s: group or others can read this secret key (chmod 600 it)", key)
        loaded = [load_public_key(Path(p)) for p in server_keys]
        if len(loaded) == 1:
            mapping = {ANY_NODE: loaded[0]}
        elif len(loaded) == len(nodes):
            mapping = dict(zip(nodes, loaded, strict=True))
        else:
            raise KeyFileError(
                f"{len(loaded)} --server-key files for {len(nodes)} --node endpoints: give one for all nodes, "
                "or one per node in the same order"
            )
        return cls(pair, mapping, max_message_bytes, tuple(follow_hosts))
