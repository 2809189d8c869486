"""The flag groups and value checks that several `worker-node` commands share, in one place.

Each command's own module adds its own flags (`add_arguments`) and runs it (`main`); what is
common to them (how to reach nodes and which cameras, keys, the global options) is here."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from framebus.common.cli_args import arg_type, endpoint_arg
from framebus.common.fields import validate_camera_id
from framebus.common.metrics import METRICS_HELP, parse_metrics_address
from framebus.common.sockets import DEFAULT_MAX_MESSAGE_BYTES
from framebus.common.units import parse_size
from framebus.worker_node import metrics
from framebus.worker_node.access import Access
from framebus.worker_node.follow import parse_follow_host
from framebus.worker_node.pixel_limit import parse_max_pixels
from framebus.worker_node.sink import Driver


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0  # `1.5`, `ten`: the same one line, not int()'s "invalid literal for int() with base 10"
    if value <= 0:
        raise ValueError(f"{text!r} must be a positive integer")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{text!r} must be a positive number")
    return value


def add_global_options(parser: argparse.ArgumentParser, log_default: object, metrics_default: object) -> None:
    """Before the command (`worker-node --log-level DEBUG save …`) or after it: a new user types
    both. After it, the default is SUPPRESS, so that a value given before is not overwritten."""
    parser.add_argument(
        "--log-level",
        default=log_default,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="what to log (default INFO)",
    )
    parser.add_argument(
        "--metrics-port",
        type=arg_type(parse_metrics_address),
        default=metrics_default,
        metavar="[HOST:]PORT",
        help=METRICS_HELP,
    )


def add_keys(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("security (see docs/security.md)")
    g.add_argument("--key", type=Path, help="this worker's CURVE secret key file (framebus-keys generate)")
    g.add_argument(
        "--server-key",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="the node's public key file: once for all nodes, or once per --node in the same order",
    )
    g.add_argument(
        "--max-message-size",
        type=arg_type(parse_size),
        default=DEFAULT_MAX_MESSAGE_BYTES,
        metavar="SIZE",
        help="largest message accepted from a node (default 32M): a bound on what a hostile peer can send",
    )


def add_nodes(sp: argparse.ArgumentParser, camera_required: bool = False, node_required: bool = True) -> None:
    """--node, --follow-host and --camera, with the keys to reach the nodes."""
    add_keys(sp)
    sp.add_argument(
        "--node",
        type=endpoint_arg(),
        action="append",
        default=[],
        required=node_required,
        metavar="ENDPOINT",
        help="a capture node's describe endpoint, e.g. tcp://edge1:5555 (repeatable)",
    )
    sp.add_argument(
        "--follow-host",
        type=arg_type(parse_follow_host),
        action="append",
        default=[],
        metavar="HOST",
        help="also follow camera endpoints a node describes on HOST (by default only those on the host "
        "the node was reached at; repeatable; see docs/security.md)",
    )
    sp.add_argument(
        "--camera",
        type=arg_type(validate_camera_id),  # a typo that no node could ever describe: say so now
        action="append",
        default=[],
        required=camera_required,
        metavar="ID",
        help="the cameras to process (repeatable)"
        if camera_required
        else "only these cameras (repeatable; default: all, including ones added later)",
    )


def add_max_pixels(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--max-pixels",
        type=arg_type(parse_max_pixels),
        default=None,
        metavar="N",
        help="refuse pictures of more pixels before decoding them, e.g. 8M or 3840x2160 "
        "(default: each camera's described size, with a margin; 8K at most)",
    )


def access(args: argparse.Namespace, nodes: Sequence[str] | None = None) -> Access:
    """The keys and limits to reach `nodes` (default: the --node list). Raises KeyFileError."""
    return Access.from_files(
        args.key,
        args.server_key,
        args.node if nodes is None else nodes,
        args.max_message_size,
        getattr(args, "follow_host", ()),
    )


def serve_metrics_of(args: argparse.Namespace, driver: Driver) -> None:
    """The driver's cameras in /metrics, when --metrics-port serves them."""
    if args.metrics_port is not None:
        metrics.register(driver.subscriptions)
