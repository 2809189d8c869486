"""The capture node's configuration, declared once: the shape of node.toml, each field's type,
default, bounds and meaning. capture_node/config.py loads and checks a file against it, and
docs/config.md is generated from it (capture_node/config_reference.py).

msgspec Structs: decoding is strict (no "30" for 30, no 1 for true), unknown fields are
refused, and a Struct is a plain frozen value that pickles to the camera processes.

`Meta.extra` carries what an error message and the reference say beyond the bounds: `zero`
(what 0 means), `unit`, `range` (the rule in words, when it is not a plain range) and `hint`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from framebus.common.sockets import DEFAULT_NOTSENT_LOWAT, DEFAULT_QUEUE_FRAMES, DEFAULT_SOCKET_BUFFER
from framebus.common.words import Delivery

DEFAULT_CONTROL = "tcp://127.0.0.1:5555"
MAX_INT32 = 2**31 - 1


# OpenCV's VIDEO_ACCELERATION_* names (capture_node/sources.py: hw_acceleration)
HwDecode = Literal["none", "any", "vaapi", "drm", "d3d11", "mfx"]
MIN_PICTURE_SIDE = 16


def picture_side(description: str) -> Meta:
    """A published picture's width or height: 0 keeps the source's (1 to 15 are refused in
    config.py, as a range with a gap is not a bound)."""
    words = f"0 (the source's size) or between {MIN_PICTURE_SIDE} and 16384"
    return Meta(ge=0, le=16384, description=description, extra={"zero": "the source's size", "range": words})


def seconds(low: float, high: float, description: str) -> Meta:
    """A duration field's bounds and meaning."""
    return Meta(ge=low, le=high, description=description, extra={"unit": "seconds"})


class CameraConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One [[camera]] table."""

    id: Annotated[str, Meta(description="camera id: segments of [A-Za-z0-9._-] joined by '/', up to 64 characters")]
    source: Annotated[
        str,
        Meta(
            min_length=1,
            description="'test' (built-in test picture), a video file, a URL (rtsp://, http://) or a device index",
            extra={"hint": "use 'test' for the built-in test picture"},
        ),
    ] = "test"
    bind: Annotated[str, Meta(description="frame endpoint; empty: the control port + 1 + the camera's index")] = ""
    pull_bind: Annotated[str, Meta(description="pull-mode endpoint; empty: the frame port + 1000")] = ""
    connect: Annotated[
        tuple[str, ...],
        Meta(description="also push frames out to workers listening there (an edge box behind NAT)"),
    ] = ()
    fps: Annotated[float, Meta(ge=0, le=1000, description="publish rate", extra={"zero": "the source's rate"})] = 0.0
    quality: Annotated[int, Meta(ge=1, le=100, description="JPEG quality")] = 80
    width: Annotated[int, picture_side("publish at this width, resized before encoding (test picture: 1280)")] = 0
    height: Annotated[int, picture_side("publish at this height; one of width/height alone keeps the aspect ratio")] = 0
    loop: Annotated[bool, Meta(description="restart a video file at its end")] = False
    as_fast_as_possible: Annotated[bool, Meta(description="read a video file without pacing it at its fps")] = False
    delivery: Annotated[
        Delivery,
        Meta(description="latest: the newest frame only; every-frame: lossless, back-pressured (for files)"),
    ] = Delivery.LATEST
    socket_buffer: Annotated[
        int,
        Meta(
            ge=0,
            le=MAX_INT32,
            description="SNDBUF of the frame socket",
            extra={"zero": "kernel autotuning", "range": f"0 (kernel autotuning) or 4096 to {MAX_INT32} bytes"},
        ),
    ] = DEFAULT_SOCKET_BUFFER
    notsent_lowat: Annotated[
        int,
        Meta(
            ge=0,
            le=MAX_INT32,
            description="bytes of unsent data TCP may hold (bounds frame age on slow links)",
            extra={"zero": "no limit", "unit": "bytes"},
        ),
    ] = DEFAULT_NOTSENT_LOWAT
    queue_frames: Annotated[
        int, Meta(ge=1, le=100000, description="every-frame delivery: frames queued per subscriber")
    ] = DEFAULT_QUEUE_FRAMES
    transport: Annotated[Literal["tcp", "udp"], Meta(description="RTSP transport")] = "tcp"
    hw_decode: Annotated[
        HwDecode,
        Meta(
            description="OpenCV's CAP_PROP_HW_ACCELERATION for the decoder: any falls back to the CPU (logged); "
            "a named kind the box lacks fails to open. Not tested on video hardware here"
        ),
    ] = "none"
    open_timeout: Annotated[float, seconds(0.1, 120, "an open taking longer counts as failed")] = 5.0
    read_timeout: Annotated[
        float, seconds(0.1, 120, "without a frame for this long the stream counts as dead (raise it for slow cameras)")
    ] = 3.0
    reconnect_max: Annotated[float, seconds(0.1, 3600, "cap of the exponential reconnect backoff")] = 3.0


class NodeSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The [node] table."""

    name: Annotated[str, Meta(description="node name shown to workers (1 to 128 printable characters)")] = (
        "capture-node"
    )
    control: Annotated[str, Meta(description="describe endpoint; cameras' endpoints follow its port")] = DEFAULT_CONTROL
    status_interval: Annotated[
        float, seconds(0.05, 3600, "send a status message when no frame went out for this long")
    ] = 1.0
    key: Annotated[
        str, Meta(description="this node's CURVE secret key file (framebus-keys generate); relative to this file")
    ] = ""
    allow: Annotated[str, Meta(description="directory of the public keys of admitted workers; needs key")] = ""
    insecure: Annotated[bool, Meta(description="without keys, allow plaintext on addresses other hosts reach")] = False


class NodeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A whole node.toml: one [node] table and one [[camera]] table per camera."""

    node: NodeSettings = NodeSettings()
    cameras: tuple[CameraConfig, ...] = msgspec.field(default=(), name="camera")
