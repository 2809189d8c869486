"""Capture node configuration: node.toml read, decoded against the schema (capture_node/schema.py),
checked by the rules a type cannot say, with default endpoints filled in. Errors name the file,
the field and the problem, in one line."""

from __future__ import annotations

import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import msgspec

from framebus.capture_node.config_errors import bounds, explain, field_meta
from framebus.capture_node.exposure import PolicyError, check_keys, exposed, security_warnings
from framebus.capture_node.schema import DEFAULT_CONTROL, MIN_PICTURE_SIDE, CameraConfig, NodeConfig, NodeSettings
from framebus.common.endpoint import Endpoint, EndpointError, parse_endpoint
from framebus.common.fields import shown
from framebus.common.files import FileProblemError, read_regular_file
from framebus.common.protocol import MAX_NODE_NAME, ProtocolError, validate_camera_id
from framebus.common.stream import endpoint_after

if sys.version_info >= (3, 11):  # noqa: UP036 (Python 3.10 is supported)
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "DEFAULT_CONTROL",
    "CameraConfig",
    "ConfigError",
    "NodeConfig",
    "NodeSettings",
    "from_dict",
    "load",
    "security_warnings",
    "validate",
]

MAX_CONFIG_BYTES = 1 << 20  # a config with hundreds of cameras is tens of KiB


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message says where and why."""


# ----------------------------------------------------------------------------- loading


def load(path: Path, overrides: dict[str, Any] | None = None, running: NodeConfig | None = None) -> NodeConfig:
    """Read a TOML file: a [node] table and one [[camera]] table per camera. `overrides` are
    [node] fields given on the command line; they win over the file's. `running`: see validate."""
    text = read_config_text(path)
    try:
        data = tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer past Python's digit limit
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    node = data.get("node")
    if isinstance(node, dict):  # key paths are relative to the config file, as a reader expects
        for name in ("key", "allow"):
            if isinstance(node.get(name), str) and node[name]:
                node[name] = str(path.parent / Path(node[name]).expanduser())
    if overrides:
        data["node"] = {**(node if isinstance(node, dict) else {}), **overrides}
    return from_dict(data, str(path), running)


def from_dict(data: dict[str, Any], where: str, running: NodeConfig | None = None) -> NodeConfig:
    """A node.toml's content, decoded and checked; `where` starts every error message.
    `running` is the configuration a reload replaces: its cameras keep their endpoints (see
    _assign_endpoints)."""
    try:
        config = msgspec.convert(data, NodeConfig, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {explain(str(exc), data)}") from None
    try:
        _check_fields(config)
        return rules(config, running)
    except (ConfigError, PolicyError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def validate(config: NodeConfig, where: str = "config", running: NodeConfig | None = None) -> NodeConfig:
    """A config built in code, checked as a file would be (a Struct's constructor checks no
    bounds), with default endpoints filled in."""
    return from_dict(msgspec.to_builtins(config), where, running)


# ----------------------------------------------------------------------------- rules


# Fields whose 0 means "not set" and whose other values start higher: (name, lowest non-zero)
_GAPS = (("socket_buffer", 4096), ("width", MIN_PICTURE_SIDE), ("height", MIN_PICTURE_SIDE))


def _check_fields(config: NodeConfig) -> None:
    """What a type cannot say about one field: endpoint and id syntax, printable names."""
    node = config.node
    checked_endpoint(node.control, "node.control", bind=True)
    if not node.name or len(node.name) > MAX_NODE_NAME or not node.name.isprintable():
        # Workers refuse a describe reply whose name breaks these rules: say it here, not there.
        raise ConfigError(f"node.name: must be 1 to {MAX_NODE_NAME} printable characters, got {shown(node.name)}")
    for index, cam in enumerate(config.cameras):
        place = f"camera[{index}]"
        try:
            validate_camera_id(cam.id)
        except ProtocolError as exc:
            raise ConfigError(f"{place}.id: {exc}") from None
        for name, low in _GAPS:  # the schema says 0 to the maximum; the gap above 0 is said here
            value = getattr(cam, name)
            if 0 < value < low:
                words = bounds(field_meta(CameraConfig, name) or msgspec.Meta())
                raise ConfigError(f"{place}.{name}: must be {words}, got {value}")
        for name in ("bind", "pull_bind"):
            if getattr(cam, name):
                checked_endpoint(getattr(cam, name), f"{place}.{name}", bind=True)
        for value in cam.connect:
            checked_endpoint(value, f"{place}.connect")


def rules(config: NodeConfig, running: NodeConfig | None = None) -> NodeConfig:
    """The rules across fields, in one place: at least one camera, unique ids, keys both or
    neither, default endpoints that follow the control port (kept over a reload), unique
    endpoints, and no plaintext on the network unless told. Returns the config with every
    endpoint filled in."""
    if not config.cameras:
        raise ConfigError("no [[camera]] table: a node needs at least one camera")
    check_keys(config)
    seen: set[str] = set()
    for index, cam in enumerate(config.cameras):
        if cam.id in seen:
            raise ConfigError(f"camera[{index}].id: camera id {cam.id!r} is used twice")
        seen.add(cam.id)
    cameras = _assign_endpoints(config, running)
    seen_endpoints = {config.node.control}
    for endpoint in (b for c in cameras for b in (c.bind, c.pull_bind) if not b.endswith(":*")):
        if endpoint in seen_endpoints:
            raise ConfigError(f"endpoint {endpoint} is used twice")
        seen_endpoints.add(endpoint)
    config = msgspec.structs.replace(config, cameras=tuple(cameras))
    exposed(config)
    return config


def _assign_endpoints(config: NodeConfig, running: NodeConfig | None) -> list[CameraConfig]:
    """Default endpoints: the control port + 1 + the camera's index. On a reload, a camera that
    is running keeps the endpoints it has (removing a camera must not move the ones after it,
    which would restart them and send their workers elsewhere); a new camera whose default port
    is held by a kept one takes the next free port. An explicit bind always wins."""
    control = (running or config).node.control  # a reload does not rebind it
    kept = {c.id: c for c in running.cameras} if running is not None else {}
    claimed: set[str] = set()
    cameras: list[CameraConfig | None] = []
    for cam in config.cameras:  # first pass: cameras that keep their endpoints claim them
        old = kept.get(cam.id)
        others = {e for c in config.cameras if c is not cam for e in (c.bind, c.pull_bind) if e}
        if not cam.bind and old is not None and not {old.bind, old.pull_bind} & others:
            cam = msgspec.structs.replace(cam, bind=old.bind, pull_bind=cam.pull_bind or old.pull_bind)
            claimed |= {cam.bind, cam.pull_bind}
            cameras.append(cam)
        else:
            cameras.append(None)
    result = []
    for index, (cam, assigned) in enumerate(zip(config.cameras, cameras, strict=True)):
        if assigned is None:
            assigned = cam
            if not cam.bind:
                bind = default_frame_endpoint(control, index, cam.id, f"camera[{index}]", claimed)
                assigned = msgspec.structs.replace(cam, bind=bind)
            if not assigned.pull_bind:
                assigned = msgspec.structs.replace(assigned, pull_bind=default_pull_endpoint(assigned.bind))
        result.append(assigned)
    return result


def checked_endpoint(text: str, where: str, bind: bool = False) -> Endpoint:
    """A configured endpoint, or a ConfigError naming the field (common.endpoint says what is wrong)."""
    try:
        return parse_endpoint(text, where, bind=bind)
    except EndpointError as exc:
        raise ConfigError(str(exc)) from None


def default_frame_endpoint(control: str, index: int, camera_id: str, where: str, claimed: Collection[str] = ()) -> str:
    """The control port + 1 + index, or the next port up whose frame and pull endpoints are
    not `claimed` (by cameras that keep theirs over a reload)."""
    parsed = checked_endpoint(control, "node.control", bind=True)
    offset = 1 + index
    while True:
        placed = endpoint_after(parsed, offset, camera_id.replace("/", "_"))
        if placed is None:
            raise ConfigError(f"{where}.bind: control port + {offset} is past 65535; set bind explicitly")
        if placed.port is None or not {str(placed), default_pull_endpoint(str(placed))} & set(claimed):
            return str(placed)
        offset += 1


def default_pull_endpoint(bind: str) -> str:
    """The frame port + 1000 (any free port past 65535), or the ipc path + '-pull'."""
    parsed = checked_endpoint(bind, "bind", bind=True)
    return str(endpoint_after(parsed, 1000, "pull") or parsed.with_port(None))


def read_config_text(path: Path) -> str:
    """The file's text. A FIFO would block the node at start or a SIGHUP reload for good, and
    a huge file would be read whole: opened without blocking, checked, read up to a bound."""
    try:
        data = read_regular_file(path, MAX_CONFIG_BYTES, "config")
    except FileProblemError as exc:
        raise ConfigError(str(exc)) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a node's config file")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # an editor's byte-order mark is not TOML's business
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a config file is TOML, in UTF-8)") from None
