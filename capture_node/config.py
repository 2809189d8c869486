"""Capture node configuration: typed, validated once at load, errors name the file and field."""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.endpoint import Endpoint, EndpointError, parse_endpoint
from common.fields import shown
from common.keys import KeyFileError, load_key_pair, read_allow_list, secret_file_is_private
from common.protocol import DELIVERIES, MAX_NODE_NAME, ProtocolError, validate_camera_id
from common.security import CurveFiles, ExposureError, check_exposure
from common.sockets import DEFAULT_NOTSENT_LOWAT, DEFAULT_QUEUE_FRAMES, DEFAULT_SOCKET_BUFFER

DEFAULT_CONTROL = "tcp://127.0.0.1:5555"
HW_DECODE = ("none", "any", "vaapi", "drm", "d3d11", "mfx")  # OpenCV's VIDEO_ACCELERATION_* names
MAX_CONFIG_BYTES = 1 << 20  # a config with hundreds of cameras is tens of KiB


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message says where and why."""


@dataclass(frozen=True)
class CameraConfig:
    id: str
    source: str = "test"  # "test", a video file, a URL (rtsp://, http://) or a device index
    bind: str = ""  # frame endpoint; empty: the control port + 1 + the camera's index
    pull_bind: str = ""  # pull-mode endpoint; empty: the frame port + 1000
    connect: tuple[str, ...] = ()  # also push frames out to workers listening there (edge box behind NAT)
    fps: float = 0.0  # publish rate; 0: the source's own (30 for the test source)
    quality: int = 80
    width: int = 0  # publish at this size (resized before encoding); 0: the source's (test picture: 1280)
    height: int = 0  # one of width/height alone keeps the source's aspect ratio
    loop: bool = False  # restart a video file at its end
    as_fast_as_possible: bool = False  # do not pace a video file at its own fps
    delivery: str = "latest"  # "latest": newest frame only; "every-frame": lossless, back-pressured
    socket_buffer: int = DEFAULT_SOCKET_BUFFER
    notsent_lowat: int = DEFAULT_NOTSENT_LOWAT  # bytes of unsent data TCP may hold; 0: no limit
    queue_frames: int = DEFAULT_QUEUE_FRAMES
    transport: str = "tcp"  # RTSP transport: "tcp" or "udp"
    hw_decode: str = "none"  # OpenCV's CAP_PROP_HW_ACCELERATION: none, any (CPU if none works), vaapi, drm, ...
    open_timeout: float = 5.0  # seconds an open may take before it counts as failed
    read_timeout: float = 3.0  # seconds without a frame before the stream counts as dead
    reconnect_max: float = 3.0  # cap of the exponential reconnect backoff, seconds


@dataclass(frozen=True)
class NodeConfig:
    name: str = "capture-node"
    control: str = DEFAULT_CONTROL
    status_interval: float = 1.0  # send a status message when no frame went out for this long
    key: str = ""  # the node's CURVE secret key file (framebus-keys generate); relative to the config file
    allow: str = ""  # directory of the public keys of workers admitted; needs key
    insecure: bool = False  # allow plaintext on addresses other hosts can reach
    cameras: tuple[CameraConfig, ...] = field(default_factory=tuple)

    @property
    def curve(self) -> CurveFiles | None:
        return CurveFiles(Path(self.key), Path(self.allow)) if self.key else None


def _check_camera(cam: CameraConfig, where: str) -> None:
    def bad(name: str, problem: str) -> ConfigError:
        return ConfigError(f"{where}.{name}: {problem}")

    try:
        validate_camera_id(cam.id)
    except ProtocolError as exc:
        raise bad("id", str(exc)) from None
    if not cam.source:
        raise bad("source", "must not be empty (use 'test' for the built-in test picture)")
    if not 0 <= cam.fps <= 1000:  # also rejects nan
        raise bad("fps", f"must be between 0 (the source's rate) and 1000, got {cam.fps}")
    if not 1 <= cam.quality <= 100:
        raise bad("quality", f"must be between 1 and 100, got {cam.quality}")
    for name in ("width", "height"):
        value = getattr(cam, name)
        if value and not 16 <= value <= 16384:
            raise bad(name, f"must be 0 (the source's size) or between 16 and 16384, got {value}")
    if cam.delivery not in DELIVERIES:
        raise bad("delivery", f"must be one of {', '.join(DELIVERIES)}, got {cam.delivery!r}")
    if cam.socket_buffer != 0 and not 4096 <= cam.socket_buffer <= 2**31 - 1:
        raise bad(
            "socket_buffer", f"must be 0 (kernel autotuning) or 4096 to 2147483647 bytes, got {cam.socket_buffer}"
        )
    if not 0 <= cam.notsent_lowat <= 2**31 - 1:
        raise bad("notsent_lowat", f"must be 0 (no limit) or a number of bytes, got {cam.notsent_lowat}")
    if not 1 <= cam.queue_frames <= 100000:
        raise bad("queue_frames", f"must be between 1 and 100000, got {cam.queue_frames}")
    for name in ("bind", "pull_bind"):
        if getattr(cam, name):
            checked_endpoint(getattr(cam, name), f"{where}.{name}", bind=True)
    for value in cam.connect:
        checked_endpoint(value, f"{where}.connect")
    if cam.transport not in ("tcp", "udp"):
        raise bad("transport", f"must be tcp or udp, got {cam.transport!r}")
    if cam.hw_decode not in HW_DECODE:
        raise bad("hw_decode", f"must be one of {', '.join(HW_DECODE)}, got {shown(cam.hw_decode)}")
    for name in ("open_timeout", "read_timeout"):
        value = getattr(cam, name)
        if not 0.1 <= value <= 120:
            raise bad(name, f"must be between 0.1 and 120 seconds, got {value}")
    if not 0.1 <= cam.reconnect_max <= 3600:
        raise bad("reconnect_max", f"must be between 0.1 and 3600 seconds, got {cam.reconnect_max}")


def checked_endpoint(text: str, where: str, bind: bool = False) -> Endpoint:
    """A configured endpoint, or a ConfigError naming the field (common.endpoint says what is wrong)."""
    try:
        return parse_endpoint(text, where, bind=bind)
    except EndpointError as exc:
        raise ConfigError(str(exc)) from None


def validate(config: NodeConfig, where: str = "config", running: NodeConfig | None = None) -> NodeConfig:
    """Check every field; fill in default frame endpoints after the control port. `running`
    is the configuration a reload replaces: its cameras keep their endpoints (see
    _assign_endpoints)."""
    checked_endpoint(config.control, f"{where}: node.control", bind=True)
    if not 0.05 <= config.status_interval <= 3600:
        raise ConfigError(
            f"{where}: node.status_interval: must be between 0.05 and 3600 s, got {config.status_interval}"
        )
    if not config.name or len(config.name) > MAX_NODE_NAME or not config.name.isprintable():
        # Workers refuse a describe reply whose name breaks these rules: say it here, not there.
        raise ConfigError(
            f"{where}: node.name: must be 1 to {MAX_NODE_NAME} printable characters, got {shown(config.name)}"
        )
    if not config.cameras:
        raise ConfigError(f"{where}: no [[camera]] table: a node needs at least one camera")
    _check_keys(config, where)
    seen: set[str] = set()
    for index, cam in enumerate(config.cameras):
        place = f"{where}: camera[{index}]"
        _check_camera(cam, place)
        if cam.id in seen:
            raise ConfigError(f"{place}.id: camera id {cam.id!r} is used twice")
        seen.add(cam.id)
    cameras = _assign_endpoints(config, where, running)
    seen_endpoints = {config.control}
    for endpoint in (b for c in cameras for b in (c.bind, c.pull_bind) if not b.endswith(":*")):
        if endpoint in seen_endpoints:
            raise ConfigError(f"{where}: endpoint {endpoint} is used twice")
        seen_endpoints.add(endpoint)
    config = dataclasses.replace(config, cameras=tuple(cameras))
    _exposed(config, where)
    return config


def _assign_endpoints(config: NodeConfig, where: str, running: NodeConfig | None) -> list[CameraConfig]:
    """Default endpoints: the control port + 1 + the camera's index. On a reload, a camera that
    is running keeps the endpoints it has (removing a camera must not move the ones after it,
    which would restart them and send their workers elsewhere); a new camera whose default port
    is held by a kept one takes the next free port. An explicit bind always wins."""
    control = running.control if running is not None else config.control  # a reload does not rebind it
    kept = {c.id: c for c in running.cameras} if running is not None else {}
    claimed: set[str] = set()
    cameras: list[CameraConfig | None] = []
    for cam in config.cameras:  # first pass: cameras that keep their endpoints claim them
        old = kept.get(cam.id)
        others = {e for c in config.cameras if c is not cam for e in (c.bind, c.pull_bind) if e}
        if not cam.bind and old is not None and not {old.bind, old.pull_bind} & others:
            cam = dataclasses.replace(cam, bind=old.bind, pull_bind=cam.pull_bind or old.pull_bind)
            claimed |= {cam.bind, cam.pull_bind}
            cameras.append(cam)
        else:
            cameras.append(None)
    result = []
    for index, (cam, assigned) in enumerate(zip(config.cameras, cameras, strict=True)):
        if assigned is None:
            assigned = cam
            if not cam.bind:
                bind = default_frame_endpoint(control, index, cam.id, f"{where}: camera[{index}]", claimed)
                assigned = dataclasses.replace(cam, bind=bind)
            if not assigned.pull_bind:
                assigned = dataclasses.replace(assigned, pull_bind=default_pull_endpoint(assigned.bind))
        result.append(assigned)
    return result


def _check_keys(config: NodeConfig, where: str) -> None:
    if bool(config.key) != bool(config.allow):
        missing = "allow" if config.key else "key"
        raise ConfigError(
            f"{where}: node.{missing}: CURVE needs both node.key (this node's secret key file) and node.allow "
            "(the directory of admitted workers' public keys)"
        )
    if not config.key:
        return
    try:
        load_key_pair(Path(config.key))
    except KeyFileError as exc:
        raise ConfigError(f"{where}: node.key: {exc}") from None
    try:
        read_allow_list(Path(config.allow))
    except KeyFileError as exc:
        raise ConfigError(f"{where}: node.allow: {exc}") from None


def _exposed(config: NodeConfig, where: str) -> bool:
    """Without keys, a node serves only its own host unless told --insecure: raises ConfigError,
    or returns True when it is told (and some endpoint is exposed)."""
    places = [("node.control", config.control)]
    for i, cam in enumerate(config.cameras):
        places += [(f"camera[{i}].bind", cam.bind), (f"camera[{i}].pull_bind", cam.pull_bind)]
        places += [(f"camera[{i}].connect", target) for target in cam.connect]
    fix = "Set node.key and node.allow (framebus-keys generate makes them)"
    exposed = False
    for name, text in places:
        try:
            exposed |= check_exposure(
                name, parse_endpoint(text, bind=True), secured=bool(config.key), insecure=config.insecure, fix=fix
            )
        except ExposureError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return exposed


def security_warnings(config: NodeConfig) -> list[str]:
    """Things to say at start: plaintext on the network, a secret key others can read."""
    if config.key:
        if not secret_file_is_private(Path(config.key)):
            return [f"node.key {config.key}: group or others can read this secret key (chmod 600 it)"]
        return []
    if _exposed(config, "config"):
        return ["INSECURE: no CURVE keys; frames and describe go out in plaintext to anyone who can reach this node"]
    return []


def default_frame_endpoint(control: str, index: int, camera_id: str, where: str, claimed: Collection[str] = ()) -> str:
    """The control port + 1 + index, or the next port up whose frame and pull endpoints are
    not `claimed` (by cameras that keep theirs over a reload)."""
    parsed = checked_endpoint(control, f"{where}: node.control", bind=True)
    if parsed.scheme != "tcp":
        return f"{control}-{camera_id.replace('/', '_')}"
    if not parsed.port:  # any free port for the control: any free port for frames too
        return str(parsed.with_port(None))
    port = parsed.port + 1 + index
    while True:
        if port > 65535:
            raise ConfigError(f"{where}.bind: control port + {port - parsed.port} is past 65535; set bind explicitly")
        if not {str(parsed.with_port(port)), default_pull_endpoint(str(parsed.with_port(port)))} & set(claimed):
            return str(parsed.with_port(port))
        port += 1


def default_pull_endpoint(bind: str) -> str:
    parsed = checked_endpoint(bind, "bind", bind=True)
    if parsed.scheme != "tcp":
        return f"{bind}-pull"
    if parsed.port is None:
        return bind
    port = parsed.port + 1000
    return str(parsed.with_port(port if port <= 65535 else None))  # too high: any free port


def read_config_text(path: Path) -> str:
    """The file's text. A FIFO would block the node at start or a SIGHUP reload for good, and
    a huge file would be read whole: opened without blocking, checked, read up to a bound."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{path}: is a directory, not a config file")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path}: not a regular file (a FIFO, socket or device cannot be a config file)")
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a node's config file")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # an editor's byte-order mark is not TOML's business
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a config file is TOML, in UTF-8)") from None


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
    unknown = set(data) - {"node", "camera"}
    if unknown:
        raise ConfigError(f"{where}: unknown table {sorted(unknown)[0]!r} (expected [node] and [[camera]])")
    node = data.get("node", {})
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: node: must be a table")
    if "cameras" in node:  # would be silently replaced by the [[camera]] tables
        raise ConfigError(f"{where}: node.cameras: unknown field (cameras are [[camera]] tables)")
    cams = data.get("camera", [])
    if not isinstance(cams, list):
        raise ConfigError(f"{where}: camera: must be an array of tables ([[camera]])")
    cameras = tuple(_build(CameraConfig, c, f"{where}: camera[{i}]") for i, c in enumerate(cams))
    config = _build(NodeConfig, {**node, "cameras": cameras}, f"{where}: node")
    return validate(config, where, running)


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def _build(cls: Any, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        f = fields.get(key)
        if f is None:
            raise ConfigError(f"{where}.{key}: unknown field (known: {', '.join(sorted(fields))})")
        if str(f.type).startswith("tuple[str"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}.{key}: must be a list of strings, got {value!r}")
            value = tuple(value)
        accepted = _TYPES.get(str(f.type))
        if accepted is not None:
            if isinstance(value, bool) and bool not in accepted:
                raise ConfigError(f"{where}.{key}: must be {f.type}, got a boolean")
            if not isinstance(value, accepted):
                raise ConfigError(f"{where}.{key}: must be {f.type}, got {type(value).__name__} {value!r}")
            if f.type == "float":
                try:
                    value = float(value)  # type: ignore[arg-type]
                except OverflowError:
                    raise ConfigError(f"{where}.{key}: {value} is out of range") from None
        values[key] = value
    missing = [
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and n not in values
    ]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required field is missing")
    return cls(**values)
