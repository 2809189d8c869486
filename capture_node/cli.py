"""`capture-node`: run cameras from a TOML file or a single camera from the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from framebus.capture_node import config as node_config
from framebus.capture_node import metrics
from framebus.capture_node.config import ConfigError, NodeConfig
from framebus.capture_node.node import CaptureNode
from framebus.common import threads
from framebus.common.bind_error import bind_error
from framebus.common.cli_args import ArgumentParser, arg_type, endpoint_arg
from framebus.common.logs import setup_logging
from framebus.common.metrics import METRICS_HELP, parse_metrics_address, serve_metrics
from framebus.common.shutdown import ShutdownSignals
from framebus.common.words import Delivery

log = logging.getLogger("capture_node")

_CAMERA_FLAGS = (
    "source",
    "camera_id",
    "bind",
    "connect",
    "fps",
    "quality",
    "width",
    "height",
    "loop",
    "as_fast_as_possible",
    "every_frame",
)
_EXAMPLES = """Examples:
  capture-node                                  # built-in test picture as cam1
  capture-node --source rtsp://user:pw@10.0.0.7/stream1 --camera-id door
  capture-node --config node.toml               # several cameras; SIGHUP reloads"""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="capture-node",
        description="Read cameras, JPEG-encode frames and publish the newest one over ZeroMQ.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="TOML file with a [node] table and [[camera]] tables")
    add_node_flags(p)
    add_security_flags(p.add_argument_group("security (see docs/security.md)"))
    add_camera_flags(p.add_argument_group("single camera (instead of --config)"))
    add_process_flags(p)
    return p


def add_node_flags(p: argparse._ActionsContainer) -> None:
    p.add_argument(
        "--control", type=endpoint_arg(bind=True), help=f"describe endpoint (default {node_config.DEFAULT_CONTROL})"
    )
    p.add_argument("--name", help="node name shown to workers")


def add_security_flags(p: argparse._ActionsContainer) -> None:
    p.add_argument("--key", help="this node's CURVE secret key file (made by `framebus-keys generate`)")
    p.add_argument("--allow", help="directory of the public keys of the workers admitted (re-read on change)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="without keys, allow binding addresses other hosts can reach (plaintext, anyone may connect)",
    )


def add_camera_flags(p: argparse._ActionsContainer) -> None:
    p.add_argument("--source", help="'test' (default), a video file, a URL (rtsp://, http://) or a device index")
    p.add_argument("--camera-id", help="camera id (default cam1)")
    p.add_argument("--bind", type=endpoint_arg(bind=True), help="frame endpoint (default: control port + 1)")
    p.add_argument(
        "--connect",
        type=endpoint_arg(),
        action="append",
        metavar="ENDPOINT",
        help="also push frames to a worker listening there (for a node behind NAT; repeatable)",
    )
    p.add_argument("--fps", type=float, help="publish rate (default: the source's)")
    p.add_argument("--quality", type=int, help="JPEG quality 1-100 (default 80)")
    p.add_argument("--width", type=int, help="publish at this width, resized before encoding (default: the source's)")
    p.add_argument("--height", type=int, help="publish at this height; one alone keeps the aspect ratio")
    p.add_argument("--loop", action="store_true", help="restart a video file at its end")
    p.add_argument("--as-fast-as-possible", action="store_true", help="read a video file without pacing it")
    p.add_argument(
        "--every-frame",
        action="store_true",
        help="lossless delivery: subscribers get every frame and slow the source down (for files)",
    )


def add_process_flags(p: argparse._ActionsContainer) -> None:
    p.add_argument(
        "--metrics-port", type=arg_type(parse_metrics_address), default=None, metavar="[HOST:]PORT", help=METRICS_HELP
    )
    p.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="what to log (default INFO)"
    )


def config_from_args(args: argparse.Namespace, running: NodeConfig | None = None) -> NodeConfig:
    """The configuration to run; `running` is the one a reload replaces (see config.validate)."""
    if args.config:
        given = [f"--{f.replace('_', '-')}" for f in _CAMERA_FLAGS if _given(getattr(args, f))]
        if given:
            raise ConfigError(f"{given[0]} cannot be combined with --config: put it in the config file")
        return node_config.load(args.config, node_overrides(args), running)
    camera = {f: getattr(args, f) for f in _CAMERA_FLAGS if _given(getattr(args, f))}
    camera["id"] = camera.pop("camera_id", "cam1")
    if camera.pop("every_frame", False):
        camera["delivery"] = Delivery.EVERY_FRAME.value
    return node_config.from_dict({"node": node_overrides(args), "camera": [camera]}, "command line")


def _given(value: object) -> bool:
    """Was this flag given? Not `value not in (None, False)`: 0 == False, and `--width 0` or
    `--quality 0` must reach the checks instead of silently meaning the default."""
    return value is not None and value is not False and value != []


def node_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """[node] fields given as flags; they win over the config file's."""
    named = (("control", args.control), ("name", args.name), ("key", args.key), ("allow", args.allow))
    overrides: dict[str, Any] = {k: v for k, v in named if v}
    if args.insecure:
        overrides["insecure"] = True
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    threads.install()  # a node thread that dies says why and stops the node, which exits 1
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    for warning in node_config.security_warnings(cfg):
        log.warning("%s", warning)
    reload_from = (lambda running: config_from_args(args, running)) if args.config else None
    node = CaptureNode(cfg, reload_from, args.log_level)
    signals = ShutdownSignals(reload=True)  # SIGHUP reloads
    try:  # before any camera starts: a failure here leaves nothing to clean up
        serve_metrics(args.metrics_port)
    except OSError as exc:
        log.error("--metrics-port: %s", bind_error(str(args.metrics_port), exc))
        return 2
    metrics.register(node.cameras)
    try:
        node.start()
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    while not signals.requested:
        signals.wait()
        if signals.take_reload() and not signals.requested:
            log.info("SIGHUP: reloading %s", args.config)
            node.reload()
    log.info("stopping")
    node.stop()
    log.info("stopped")
    return 1 if threads.failure() else 0


if __name__ == "__main__":
    sys.exit(main())
