"""capture_node.config: TOML loading, defaults derived from the control port, and errors that
name the file, the field and the problem."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framebus.capture_node import config
from framebus.capture_node.config import CameraConfig, ConfigError, NodeConfig, NodeSettings
from framebus.common.endpoint import parse_endpoint

VALID = """\
[node]
name = "edge-1"
control = "tcp://127.0.0.1:5555"
status_interval = 2

[[camera]]
id = "front"
source = "test"
fps = 15
quality = 70
width = 640
height = 480

[[camera]]
id = "back"
source = "rtsp://10.0.0.9/stream"
delivery = "every-frame"
loop = true
"""


def write(tmp_path: Path, text: str, name: str = "node.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def camera_toml(fields: dict[str, Any]) -> str:
    return "[[camera]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in fields.items())


def node_toml(control: str = "tcp://127.0.0.1:5555", **extra: Any) -> str:
    lines = [f"control = {toml_value(control)}"] + [f"{k} = {toml_value(v)}" for k, v in extra.items()]
    return "[node]\n" + "\n".join(lines) + "\n"


def expect_error(path: Path, *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ----------------------------------------------------------------------------- valid files


def test_valid_file_loads(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, VALID))
    assert isinstance(cfg, NodeConfig)
    assert cfg.node.name == "edge-1"
    assert cfg.node.control == "tcp://127.0.0.1:5555"
    assert cfg.node.status_interval == 2.0 and isinstance(cfg.node.status_interval, float)
    front, back = cfg.cameras
    assert front == CameraConfig(
        id="front",
        source="test",
        bind="tcp://127.0.0.1:5556",
        pull_bind="tcp://127.0.0.1:6556",
        fps=15.0,
        quality=70,
        width=640,
        height=480,
    )
    assert isinstance(front.fps, float)
    assert back.id == "back"
    assert back.source == "rtsp://10.0.0.9/stream"
    assert back.delivery == "every-frame"
    assert back.loop is True
    assert back.bind == "tcp://127.0.0.1:5557"


def test_node_table_is_optional(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, camera_toml({"id": "a"})))
    assert cfg.node.name == "capture-node"
    assert cfg.node.control == config.DEFAULT_CONTROL
    assert cfg.cameras[0].bind == "tcp://127.0.0.1:5556"


@pytest.mark.parametrize(
    ("control", "expected"),
    [
        ("tcp://127.0.0.1:5555", ["tcp://127.0.0.1:5556", "tcp://127.0.0.1:5557"]),
        ("tcp://*:7000", ["tcp://*:7001", "tcp://*:7002"]),
        ("tcp://127.0.0.1:*", ["tcp://127.0.0.1:*", "tcp://127.0.0.1:*"]),
        ("tcp://[::1]:6000", ["tcp://[::1]:6001", "tcp://[::1]:6002"]),
        ("ipc:///tmp/fb-node", ["ipc:///tmp/fb-node-cam1", "ipc:///tmp/fb-node-cam2"]),
    ],
)
def test_default_frame_endpoints_follow_the_control_endpoint(tmp_path: Path, control: str, expected: list[str]) -> None:
    text = node_toml(control, insecure=True) + camera_toml({"id": "cam1"}) + camera_toml({"id": "cam2"})
    cfg = config.load(write(tmp_path, text))
    assert [c.bind for c in cfg.cameras] == expected


def test_ipc_default_endpoint_replaces_slash_in_camera_id() -> None:
    cfg = config.from_dict({"node": {"control": "ipc:///tmp/n"}, "camera": [{"id": "a/b"}]}, "x.toml")
    assert cfg.cameras[0].bind == "ipc:///tmp/n-a_b"


def test_explicit_bind_is_kept_and_later_indexes_still_count(tmp_path: Path) -> None:
    text = node_toml() + camera_toml({"id": "a", "bind": "tcp://127.0.0.1:9000"}) + camera_toml({"id": "b"})
    cfg = config.load(write(tmp_path, text))
    assert [c.bind for c in cfg.cameras] == ["tcp://127.0.0.1:9000", "tcp://127.0.0.1:5557"]


def test_highest_usable_port_is_accepted(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, node_toml("tcp://127.0.0.1:65534") + camera_toml({"id": "a"})))
    assert cfg.cameras[0].bind == "tcp://127.0.0.1:65535"


def test_control_any_port_means_any_port_for_frames_too() -> None:
    """`*` binds any free port: there is no control port + 1 to follow. (Port 0 is refused by
    the endpoint parser, which suggests `*`.)"""
    cfg = config.from_dict({"node": {"control": "tcp://127.0.0.1:*"}, "camera": [{"id": "a"}]}, "x.toml")
    assert cfg.cameras[0].bind == "tcp://127.0.0.1:*"
    with pytest.raises(ConfigError, match=r"the port 0 is not from 1 to 65535 \(use '\*' for any free port\)"):
        config.from_dict({"node": {"control": "tcp://127.0.0.1:0"}, "camera": [{"id": "a"}]}, "x.toml")


def _cameras(*ids: str, **fields: Any) -> dict[str, Any]:
    return {"node": {"control": "tcp://127.0.0.1:5555"}, "camera": [{"id": i, **fields} for i in ids]}


def test_a_reload_keeps_the_endpoints_of_running_cameras() -> None:
    """Removing the first camera must not move the others down a port (which restarts them)."""
    running = config.from_dict(_cameras("a", "b", "c"), "x.toml")
    assert [c.bind for c in running.cameras] == [f"tcp://127.0.0.1:{p}" for p in (5556, 5557, 5558)]
    reloaded = config.from_dict(_cameras("b", "c"), "x.toml", running)
    assert reloaded.cameras == running.cameras[1:]


def test_a_camera_added_by_a_reload_skips_the_ports_kept_cameras_hold() -> None:
    running = config.from_dict(_cameras("b", "c"), "x.toml", config.from_dict(_cameras("a", "b", "c"), "x.toml"))
    reloaded = config.from_dict(_cameras("d", "b", "c", "e"), "x.toml", running)
    assert [(c.id, c.bind, c.pull_bind) for c in reloaded.cameras] == [
        ("d", "tcp://127.0.0.1:5556", "tcp://127.0.0.1:6556"),
        ("b", "tcp://127.0.0.1:5557", "tcp://127.0.0.1:6557"),
        ("c", "tcp://127.0.0.1:5558", "tcp://127.0.0.1:6558"),
        ("e", "tcp://127.0.0.1:5559", "tcp://127.0.0.1:6559"),
    ]
    again = config.from_dict(_cameras("x", "y", "b", "c"), "x.toml", running)  # x, y: 5556, then past b and c
    assert [c.bind.rpartition(":")[2] for c in again.cameras] == ["5556", "5559", "5557", "5558"]


def test_an_explicit_bind_may_take_the_port_of_a_removed_camera() -> None:
    running = config.from_dict(_cameras("a", "b"), "x.toml")
    data = _cameras("b")
    data["camera"].append({"id": "c", "bind": "tcp://127.0.0.1:5556"})
    reloaded = config.from_dict(data, "x.toml", running)
    assert [c.bind for c in reloaded.cameras] == ["tcp://127.0.0.1:5557", "tcp://127.0.0.1:5556"]


def test_an_explicit_bind_on_a_kept_port_is_the_error_a_first_start_gives() -> None:
    running = config.from_dict(_cameras("a", "b"), "x.toml")
    data = _cameras("a", "b")
    data["camera"].append({"id": "c", "bind": "tcp://127.0.0.1:5556"})
    with pytest.raises(ConfigError, match="endpoint tcp://127.0.0.1:5556 is used twice"):
        config.from_dict(data, "x.toml")
    with pytest.raises(ConfigError, match="endpoint tcp://127.0.0.1:5556 is used twice"):
        config.from_dict(data, "x.toml", running)


def test_a_changed_camera_keeps_its_endpoints_too() -> None:
    running = config.from_dict(_cameras("a", "b"), "x.toml")
    reloaded = config.from_dict(_cameras("b", fps=5), "x.toml", running)
    assert reloaded.cameras[0].bind == "tcp://127.0.0.1:5557"
    assert reloaded.cameras[0].fps == 5


# ----------------------------------------------------------------------------- invalid fields


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"colour": "red"}, "colour", "unknown field"),
        ({"fps": "30"}, "fps", "must be float, got str"),
        ({"quality": True}, "quality", "got a boolean"),
        ({"source": 0}, "source", "must be str, got int"),
        ({"loop": 1}, "loop", "must be bool, got int"),
        ({"width": 64.0}, "width", "must be int, got float"),
        ({"quality": 0}, "quality", "between 1 and 100, got 0"),
        ({"quality": 101}, "quality", "between 1 and 100, got 101"),
        ({"fps": -1}, "fps", "got -1.0"),
        ({"fps": 1001}, "fps", "and 1000"),
        ({"fps": float("inf")}, "fps", "got inf"),
        ({"fps": float("nan")}, "fps", "got nan"),
        ({"fps": 10**400}, "fps", "out of range"),
        ({"width": 8}, "width", "must be 0 (the source's size) or between 16 and 16384, got 8"),
        ({"height": 16385}, "height", "got 16385"),
        ({"height": -1}, "height", "got -1"),
        ({"hw_decode": "cuda"}, "hw_decode", "must be one of none, any, vaapi, drm, d3d11, mfx, got 'cuda'"),
        ({"delivery": "sometimes"}, "delivery", "'sometimes'"),
        ({"source": ""}, "source", "must not be empty"),
        ({"socket_buffer": 100}, "socket_buffer", "got 100"),
        ({"socket_buffer": 2**40}, "socket_buffer", f"got {2**40}"),
        ({"queue_frames": 0}, "queue_frames", "got 0"),
        ({"bind": "udp://1.2.3.4:5"}, "bind", "'udp://1.2.3.4:5'"),
        ({"id": "../x"}, "id", "invalid"),
        ({"id": "a b"}, "id", "invalid"),
        ({"id": "a/../b"}, "id", "'..'"),
        ({"id": ""}, "id", "invalid"),
        ({"id": "x" * 65}, "id", "invalid"),
    ],
)
def test_invalid_camera_field_names_file_field_and_problem(
    tmp_path: Path, fields: dict[str, Any], field: str, problem: str
) -> None:
    text = camera_toml({"id": "first"}) + camera_toml({"id": "good", **fields})
    expect_error(write(tmp_path, text), f"camera[1].{field}", problem)


def test_missing_camera_id(tmp_path: Path) -> None:
    expect_error(write(tmp_path, camera_toml({"source": "test"})), "camera[0].id", "required field is missing")


def test_duplicate_camera_id(tmp_path: Path) -> None:
    text = camera_toml({"id": "a"}) + camera_toml({"id": "b"}) + camera_toml({"id": "a"})
    expect_error(write(tmp_path, text), "camera[2].id", "'a' is used twice")


def test_duplicate_explicit_endpoint(tmp_path: Path) -> None:
    text = camera_toml({"id": "a", "bind": "tcp://127.0.0.1:9000"}) + camera_toml(
        {"id": "b", "bind": "tcp://127.0.0.1:9000"}
    )
    expect_error(write(tmp_path, text), "endpoint tcp://127.0.0.1:9000 is used twice")


def test_explicit_endpoint_clashing_with_a_derived_one(tmp_path: Path) -> None:
    text = node_toml() + camera_toml({"id": "a", "bind": "tcp://127.0.0.1:5557"}) + camera_toml({"id": "b"})
    expect_error(write(tmp_path, text), "endpoint tcp://127.0.0.1:5557 is used twice")


def test_endpoint_equal_to_the_control_endpoint(tmp_path: Path) -> None:
    text = node_toml() + camera_toml({"id": "a", "bind": "tcp://127.0.0.1:5555"})
    expect_error(write(tmp_path, text), "endpoint tcp://127.0.0.1:5555 is used twice")


def test_wildcard_ports_may_repeat(tmp_path: Path) -> None:
    text = camera_toml({"id": "a", "bind": "tcp://127.0.0.1:*"}) + camera_toml({"id": "b", "bind": "tcp://127.0.0.1:*"})
    cfg = config.load(write(tmp_path, text))
    assert [c.bind for c in cfg.cameras] == ["tcp://127.0.0.1:*"] * 2


def test_no_cameras(tmp_path: Path) -> None:
    expect_error(write(tmp_path, node_toml()), "no [[camera]] table")


def test_empty_file(tmp_path: Path) -> None:
    expect_error(write(tmp_path, ""), "no [[camera]] table")


def test_unknown_top_level_table(tmp_path: Path) -> None:
    expect_error(write(tmp_path, camera_toml({"id": "a"}) + "[worker]\nx = 1\n"), "unknown table 'worker'")


def test_unknown_node_field(tmp_path: Path) -> None:
    expect_error(write(tmp_path, node_toml(port=5) + camera_toml({"id": "a"})), "node.port", "unknown field")


def test_node_cameras_key_is_not_silently_ignored(tmp_path: Path) -> None:
    text = '[node]\ncameras = "front"\n' + camera_toml({"id": "a"})
    expect_error(write(tmp_path, text), "node.cameras", "unknown field")


def test_node_wrong_type(tmp_path: Path) -> None:
    expect_error(write(tmp_path, node_toml(name=3) + camera_toml({"id": "a"})), "node.name", "must be str")


def test_node_not_a_table(tmp_path: Path) -> None:
    expect_error(write(tmp_path, 'node = "x"\n' + camera_toml({"id": "a"})), "node: must be a table")


def test_camera_not_an_array_of_tables(tmp_path: Path) -> None:
    expect_error(write(tmp_path, "[camera]\nid = 'a'\n"), "camera: must be an array of tables")


def test_camera_entry_not_a_table(tmp_path: Path) -> None:
    expect_error(write(tmp_path, "camera = [1]\n"), "camera[0]: must be a table")


def test_invalid_toml_syntax(tmp_path: Path) -> None:
    expect_error(write(tmp_path, "[[camera]]\nid = \n"), "not valid TOML")


def test_integer_past_python_digit_limit(tmp_path: Path) -> None:
    expect_error(write(tmp_path, camera_toml({"id": "a"}) + "fps = " + "9" * 5000 + "\n"), "not valid TOML")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_bytes(b'[[camera]]\nid = "\xff"\n')
    expect_error(path, "not a text file")


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "absent.toml", "no such config file")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    path = tmp_path / "dir.toml"
    path.mkdir()
    expect_error(path, "is a directory, not a config file")


@pytest.mark.parametrize(
    ("control", "problem"),
    [
        ("udp://127.0.0.1:5555", "'udp://127.0.0.1:5555' is a camera URL"),
        ("127.0.0.1:5555", "'127.0.0.1:5555' has no scheme: did you mean tcp://127.0.0.1:5555?"),
        ("tcp://127.0.0.1", "'tcp://127.0.0.1' has no port: give one, e.g. tcp://127.0.0.1:5555"),
        ("tcp://10.0.0.1:0;127.0.0.1:5555", "'tcp://10.0.0.1:0;127.0.0.1:5555' names a source address"),
        ("", "an empty endpoint"),
    ],
)
def test_bad_control_endpoint(tmp_path: Path, control: str, problem: str) -> None:
    expect_error(write(tmp_path, node_toml(control) + camera_toml({"id": "a"})), "node.control: " + problem)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("bind", "tcp://127.0.0.1:99999", "the port 99999 is not from 1 to 65535"),
        ("bind", "rtsp://admin:pw@10.0.0.7/s", "'rtsp://admin:***@10.0.0.7/s' is a camera URL"),
        ("pull_bind", "tcp://:7000", "has no host"),
        ("connect", ["tcp://127.0.0.1:*"], "port '*' (any free port) is for binding"),
        ("connect", ["127.0.0.1:6000"], "did you mean tcp://127.0.0.1:6000?"),
    ],
)
def test_bad_camera_endpoints_name_the_field_and_the_fix(
    tmp_path: Path, field: str, value: object, problem: str
) -> None:
    message = expect_error(
        write(tmp_path, node_toml() + camera_toml({"id": "a", field: value})), f"camera[0].{field}: "
    )
    assert problem in message and "pw" not in message


def test_inproc_endpoints_are_refused(tmp_path: Path) -> None:
    """Cameras run in their own processes: inproc:// cannot reach them."""
    expect_error(write(tmp_path, node_toml("inproc://ctl") + camera_toml({"id": "a"})), "node.control", "inproc")
    text = node_toml() + camera_toml({"id": "a", "bind": "inproc://a"})
    expect_error(write(tmp_path, text), "camera[0].bind", "inproc")


@pytest.mark.parametrize("interval", [0, 0.01, 3601, float("inf"), float("nan"), -1])
def test_status_interval_out_of_range(tmp_path: Path, interval: float) -> None:
    text = node_toml(status_interval=interval) + camera_toml({"id": "a"})
    expect_error(write(tmp_path, text), "node.status_interval", "between 0.05 and 3600")


@pytest.mark.parametrize("interval", [0.05, 3600])
def test_status_interval_bounds_are_inclusive(tmp_path: Path, interval: float) -> None:
    text = node_toml(status_interval=interval) + camera_toml({"id": "a"})
    assert config.load(write(tmp_path, text)).node.status_interval == interval


def test_control_port_plus_index_past_65535(tmp_path: Path) -> None:
    text = node_toml("tcp://127.0.0.1:65534") + camera_toml({"id": "a"}) + camera_toml({"id": "b"})
    expect_error(write(tmp_path, text), "camera[1].bind", "past 65535")


def test_validate_directly() -> None:
    cfg = NodeConfig(cameras=(CameraConfig(id="a"),))
    checked = config.validate(cfg, "cli")
    assert checked.cameras[0].bind == "tcp://127.0.0.1:5556"
    with pytest.raises(ConfigError, match=r"^cli: camera\[0\]\.quality"):
        config.validate(msgspec.structs.replace(cfg, cameras=(CameraConfig(id="a", quality=0),)), "cli")


# ----------------------------------------------------------------------------- property


# A mostly valid config, then up to three mutations: a known field set to an arbitrary value,
# an arbitrary extra key, or a whole table replaced by something else. That reaches valid
# configs, every type and range check, and malformed shapes.
_ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.datetimes(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=4,
)
_IDS = ["a", "b", "cam/1", "x.y-z_1", "", ".", "../x", "a b", "x" * 65, "a/b/c/d/e"]
_ENDPOINTS = [
    "",
    "tcp://127.0.0.1:5555",
    "tcp://127.0.0.1:5556",
    "tcp://127.0.0.1:*",
    "tcp://*:65535",
    "tcp://[::1]:7000",
    "ipc:///tmp/fb",
    "inproc://x",
    "udp://x:1",
    "tcp://host",
]
_VALID_CAMERA = {
    "source": st.sampled_from(["test", "0", "video.mp4", "rtsp://h/s"]),
    "bind": st.sampled_from(["tcp://127.0.0.1:9001", "tcp://127.0.0.1:*", "ipc:///tmp/c"]),
    "fps": st.floats(min_value=0, max_value=1000),
    "quality": st.integers(min_value=1, max_value=100),
    "width": st.just(0) | st.integers(min_value=16, max_value=16384),
    "height": st.just(0) | st.integers(min_value=16, max_value=16384),
    "hw_decode": st.sampled_from(["none", "any", "vaapi", "drm", "d3d11", "mfx"]),
    "loop": st.booleans(),
    "as_fast_as_possible": st.booleans(),
    "delivery": st.sampled_from(["latest", "every-frame"]),
    "socket_buffer": st.integers(min_value=4096, max_value=2**31 - 1),
    "queue_frames": st.integers(min_value=1, max_value=100000),
}
_VALID_NODE = {
    "name": st.text(max_size=12),
    "control": st.sampled_from(["tcp://127.0.0.1:5555", "tcp://*:6000", "tcp://127.0.0.1:*", "ipc:///tmp/n"]),
    "status_interval": st.floats(min_value=0.05, max_value=3600),
    "insecure": st.booleans(),
}
_BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "str": st.text(max_size=12) | st.sampled_from(_IDS + _ENDPOINTS + ["test", "latest", "every-frame", "all"]),
    "int": st.integers(min_value=-5, max_value=20000) | st.integers() | st.sampled_from([2**31, 2**63, 10**400]),
    "float": st.floats() | st.integers(min_value=-5, max_value=5000) | st.sampled_from([10**400, -(10**400)]),
    "bool": st.booleans(),
}


def _kind(annotation: Any) -> str:
    """'str', 'int', 'float', 'bool' or another name, Annotated[...] seen through."""
    base = typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation
    return getattr(base, "__name__", str(base))


_CAMERA_TYPES = {f.encode_name: _kind(f.type) for f in msgspec.structs.fields(CameraConfig)}
_NODE_TYPES = {f.encode_name: _kind(f.type) for f in msgspec.structs.fields(NodeSettings)}


def _value_for(kind: str) -> st.SearchStrategy[Any]:
    return _BY_TYPE.get(kind, _ANY) | _ANY


def _key_and_value(types: dict[str, str]) -> st.SearchStrategy[tuple[str, Any]]:
    known = st.sampled_from(sorted(types)).flatmap(lambda k: st.tuples(st.just(k), _value_for(types[k])))
    extra = st.tuples(st.text(max_size=10), _ANY)
    return known | known | extra


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if draw(st.booleans()):
        data["node"] = draw(st.fixed_dictionaries({}, optional=_VALID_NODE))
    cameras = []
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        camera = {"id": draw(st.sampled_from(_IDS[:4]))}
        camera.update(draw(st.fixed_dictionaries({}, optional=_VALID_CAMERA)))
        cameras.append(camera)
    data["camera"] = cameras
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        what = draw(st.sampled_from(["node", "camera", "camera", "camera", "top", "replace"]))
        if what == "node":
            node = data.setdefault("node", {})
            if isinstance(node, dict):
                key, value = draw(_key_and_value(_NODE_TYPES))
                node[key] = value
        elif what == "camera" and any(isinstance(c, dict) for c in cameras):
            camera = draw(st.sampled_from([c for c in cameras if isinstance(c, dict)]))
            key, value = draw(_key_and_value(_CAMERA_TYPES))
            camera[key] = value
        elif what == "top":
            data[draw(st.text(max_size=8))] = draw(_ANY)
        elif what == "replace":
            target = draw(st.sampled_from(["node", "camera", "camera-item"]))
            if target == "camera-item" and cameras:
                cameras[draw(st.integers(min_value=0, max_value=len(cameras) - 1))] = draw(_ANY)
            elif target != "camera-item":
                data[target] = draw(_ANY)
    if draw(st.booleans()) and isinstance(data.get("camera"), list):
        for camera in data["camera"]:
            if isinstance(camera, dict) and draw(st.integers(min_value=0, max_value=9)) == 0:
                camera.pop("id", None)
    return data


@settings(
    deadline=None, max_examples=300, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(configs())
def test_from_dict_returns_config_or_raises_config_error(data: dict[str, Any]) -> None:
    try:
        cfg = config.from_dict(data, "x.toml")
    except ConfigError as exc:
        assert str(exc).startswith("x.toml: ")
        return
    assert isinstance(cfg, NodeConfig)
    assert cfg.cameras
    assert len({c.id for c in cfg.cameras}) == len(cfg.cameras)
    for cam in cfg.cameras:
        assert isinstance(cam, CameraConfig)
        assert cam.bind
        assert cfg.node.insecure or parse_endpoint(cam.bind, bind=True).is_loopback
        assert 0 <= cam.fps <= 1000
        assert 1 <= cam.quality <= 100
        assert cam.width in range(16, 16385) or cam.width == 0
        assert cam.height in range(16, 16385) or cam.height == 0
