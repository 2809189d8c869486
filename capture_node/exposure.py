"""The capture node's security policy over its configuration: CURVE keys both or neither,
and no plaintext on an address other hosts can reach unless told --insecure."""

from __future__ import annotations

from pathlib import Path

from framebus.capture_node.schema import NodeConfig
from framebus.common.endpoint import parse_endpoint
from framebus.common.keys import KeyFileError, load_key_pair, read_allow_list, secret_file_is_private
from framebus.common.security import CurveFiles, ExposureError, check_exposure

FIX = "Set node.key and node.allow (framebus-keys generate makes them)"


class PolicyError(ValueError):
    """The configuration breaks the policy; the message names the field (config adds the file)."""


def curve_files(config: NodeConfig) -> CurveFiles | None:
    node = config.node
    return CurveFiles(Path(node.key), Path(node.allow)) if node.key else None


def check_keys(config: NodeConfig) -> None:
    """node.key and node.allow come together, and both can be read."""
    node = config.node
    if bool(node.key) != bool(node.allow):
        missing = "allow" if node.key else "key"
        raise PolicyError(
            f"node.{missing}: CURVE needs both node.key (this node's secret key file) and node.allow "
            "(the directory of admitted workers' public keys)"
        )
    if not node.key:
        return
    try:
        load_key_pair(Path(node.key))
    except KeyFileError as exc:
        raise PolicyError(f"node.key: {exc}") from None
    try:
        read_allow_list(Path(node.allow))
    except KeyFileError as exc:
        raise PolicyError(f"node.allow: {exc}") from None


def exposed(config: NodeConfig) -> bool:
    """Without keys, a node serves only its own host unless told --insecure: raises PolicyError,
    or returns True when it is told (and some endpoint is exposed). Endpoints were checked."""
    node = config.node
    places = [("node.control", node.control)]
    for i, cam in enumerate(config.cameras):
        places += [(f"camera[{i}].bind", cam.bind), (f"camera[{i}].pull_bind", cam.pull_bind)]
        places += [(f"camera[{i}].connect", target) for target in cam.connect]
    found = False
    for name, text in places:
        try:
            found |= check_exposure(
                name, parse_endpoint(text, bind=True), secured=bool(node.key), insecure=node.insecure, fix=FIX
            )
        except ExposureError as exc:
            raise PolicyError(str(exc)) from None
    return found


def security_warnings(config: NodeConfig) -> list[str]:
    """Things to say at start: plaintext on the network, a secret key others can read."""
    key = config.node.key
    if key:
        if not secret_file_is_private(Path(key)):
            return [f"node.key {key}: group or others can read this secret key (chmod 600 it)"]
        return []
    if exposed(config):
        return ["INSECURE: no CURVE keys; frames and describe go out in plaintext to anyone who can reach this node"]
    return []
