"""`worker-node`: subscribe to capture nodes and do something with the frames."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import zmq

from common import threads
from common.bind_error import BindError, bind_error
from common.cli_args import ArgumentParser, arg_type, endpoint_arg
from common.endpoint import EndpointError, parse_endpoint, parse_listen
from common.fields import validate_camera_id
from common.keys import KeyFileError
from common.logs import setup_logging
from common.metrics import METRICS_HELP, parse_metrics_address, serve_metrics
from common.redact import redact
from common.security import CurveFiles, ExposureError, check_exposure, http_exposure_warning
from common.shutdown import ShutdownSignals
from common.sockets import DEFAULT_MAX_MESSAGE_BYTES
from common.units import parse_duration, parse_size
from worker_node.access import Access
from worker_node.discovery import ClockOffset, DiscoveryError, describe_with_clock
from worker_node.display import DisplayOptions, run_display
from worker_node.follow import parse_follow_host
from worker_node.http_log import quiet_client_errors
from worker_node.pixel_limit import parse_max_pixels
from worker_node.process import HandlerError, load_handler
from worker_node.processing import FrameProcessor, ProcessOptions
from worker_node.receiver import FrameReceiver
from worker_node.republish import DEFAULT_CONTROL
from worker_node.save import SavePolicy, SaveSink
from worker_node.status_line import print_status
from worker_node.top import run_top
from worker_node.web import WebOptions, run_web

log = logging.getLogger("worker_node")


def _listen_endpoint(text: str) -> str:
    endpoint = parse_endpoint(text, bind=True)
    if endpoint.scheme == "tcp" and endpoint.port is None:
        raise EndpointError(f"'{endpoint}': give a fixed port (e.g. tcp://0.0.0.0:6000): capture nodes connect to it")
    return str(endpoint)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0  # `1.5`, `ten`: the same one line, not int()'s "invalid literal for int() with base 10"
    if value <= 0:
        raise ValueError(f"{text!r} must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{text!r} must be a positive number")
    return value


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if (
        not sep
        or not width.isdigit()
        or not height.isdigit()
        or not (64 <= int(width) <= 8192 and 64 <= int(height) <= 8192)
    ):
        raise ValueError(f"{text!r} is not a size like 1280x720 (64 to 8192 pixels each way)")
    return int(width), int(height)


def _add_global_options(parser: argparse.ArgumentParser, log_default: object, metrics_default: object) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="worker-node", description="Subscribe to framebus capture nodes.")
    _add_global_options(p, log_default="INFO", metrics_default=None)
    sub = p.add_subparsers(dest="command", required=True)

    def with_keys(sp: argparse.ArgumentParser) -> None:
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

    def with_nodes(sp: argparse.ArgumentParser, camera_required: bool = False, node_required: bool = True) -> None:
        with_keys(sp)
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

    def with_max_pixels(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--max-pixels",
            type=arg_type(parse_max_pixels),
            default=None,
            metavar="N",
            help="refuse pictures of more pixels before decoding them, e.g. 8M or 3840x2160 "
            "(default: each camera's described size, with a margin; 8K at most)",
        )

    save = sub.add_parser(
        "save",
        help="save frames as JPEG files",
        description="Save every N-th frame or one frame every T seconds of each camera as a plain JPEG file.",
    )
    with_nodes(save, node_required=False)
    save.add_argument(
        "--listen",
        type=arg_type(_listen_endpoint),
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="bind here for capture nodes that connect out (behind NAT), e.g. tcp://0.0.0.0:6000 (repeatable)",
    )
    save.add_argument(
        "--insecure",
        action="store_true",
        help="without keys, allow --listen on an address other hosts can reach (plaintext)",
    )
    save.add_argument("--out", type=Path, required=True, help="directory for the JPEG files")
    save.add_argument(
        "--pull", action="store_true", help="ask for each frame instead of subscribing (links slower than the stream)"
    )
    rate = save.add_mutually_exclusive_group()
    rate.add_argument(
        "--every-n",
        type=arg_type(_positive_int),
        metavar="N",
        help="save every N-th frame (exact on every-frame streams)",
    )
    rate.add_argument(
        "--every", type=arg_type(parse_duration), metavar="T", help="save one frame every T (e.g. 5s, 2m); default 1s"
    )
    save.add_argument(
        "--keep-files",
        type=arg_type(_positive_int),
        default=0,
        metavar="N",
        help="keep at most N files (oldest deleted)",
    )
    save.add_argument(
        "--keep-bytes",
        type=arg_type(parse_size),
        default=0,
        metavar="SIZE",
        help="keep at most SIZE bytes of files (e.g. 500M, 10G)",
    )
    save.add_argument("--count", type=arg_type(_positive_int), default=0, metavar="N", help="stop after saving N files")
    save.add_argument(
        "--duration", type=arg_type(parse_duration), default=0.0, metavar="T", help="stop after T (e.g. 30s, 1h)"
    )
    save.add_argument(
        "--status-interval",
        type=arg_type(parse_duration),
        default=5.0,
        metavar="T",
        help="print a status line per camera every T (default 5s)",
    )

    display = sub.add_parser(
        "display",
        help="show cameras in a window (mosaic)",
        description="One window with the newest frame of each camera; q or Esc quits. Needs a display "
        "and the GUI build of OpenCV (opencv-python).",
    )
    with_nodes(display)
    display.add_argument(
        "--size", type=arg_type(_size), default=(1280, 720), metavar="WxH", help="window size (default 1280x720)"
    )
    display.add_argument("--title", default="framebus", help="window title (default framebus)")
    display.add_argument(
        "--max-fps", type=arg_type(_positive_float), default=30.0, metavar="N", help="redraws per second at most"
    )
    with_max_pixels(display)

    web = sub.add_parser(
        "web",
        help="serve a live web page of the cameras",
        description="A page with every camera as a live MJPEG tile, /cameras/<id>.mjpg, /cameras/<id>.jpg and /api/status.",
    )
    with_nodes(web)
    web.add_argument(
        "--listen", type=arg_type(parse_listen), default=parse_listen("127.0.0.1:8080"), metavar="HOST:PORT",
        help="where to serve (default 127.0.0.1:8080; 0.0.0.0:8080 for other hosts; port 0: any free port)",
    )  # fmt: skip

    proc = sub.add_parser(
        "process",
        help="run a function on the newest frames and republish",
        description="Call HANDLER(image, header) with the newest decoded frame of each camera; its results are "
        "logged and published as metadata, its output frames as the stream <camera>/<suffix>.",
    )
    with_nodes(proc, camera_required=True)
    proc.add_argument(
        "--handler", required=True, metavar="MODULE:NAME", help="e.g. worker_node.handlers.motion:MotionDetector"
    )
    proc.add_argument(
        "--control", type=endpoint_arg(bind=True), default=DEFAULT_CONTROL, metavar="ENDPOINT",
        help=f"describe endpoint of the derived streams (default {DEFAULT_CONTROL}; tcp://127.0.0.1:* for any port)",
    )  # fmt: skip
    proc.add_argument(
        "--suffix", default="annotated", help="derived stream id is <camera>/<suffix> (default annotated)"
    )
    proc.add_argument("--quality", type=int, default=80, help="JPEG quality of output frames (default 80)")
    proc.add_argument("--name", default="process-worker", help="node name shown to workers")
    proc.add_argument(
        "--allow", type=Path, help="with --key: serve the derived streams only to the workers whose keys are here"
    )
    proc.add_argument(
        "--insecure",
        action="store_true",
        help="without --key/--allow, allow a --control address other hosts can reach (plaintext)",
    )
    with_max_pixels(proc)

    top = sub.add_parser(
        "top",
        help="a live table of cameras: state, fps, age, drops, reconnects",
        description="A table of every camera of the nodes, refreshed in place: state, received fps, frame age, "
        "frames dropped by conflation and reconnects. Ctrl-C quits.",
    )
    with_nodes(top)
    top.add_argument(
        "--refresh", type=arg_type(parse_duration), default=1.0, metavar="T", help="refresh every T (default 1s)"
    )
    top.add_argument("--count", type=arg_type(_positive_int), default=0, metavar="N", help="stop after N refreshes")

    desc = sub.add_parser(
        "describe",
        help="list a node's cameras",
        description="Ask a node once for its cameras (state, size, fps, delivery, endpoint) and how far its clock "
        "is from this host's, print them and exit: 0 if it answered, 1 if not.",
    )
    desc.add_argument(
        "--node",
        type=endpoint_arg(),
        required=True,
        metavar="ENDPOINT",
        help="the node's describe endpoint, e.g. tcp://edge1:5555",
    )
    with_keys(desc)
    desc.add_argument(
        "--timeout",
        type=arg_type(parse_duration),
        default=3.0,
        metavar="T",
        help="how long to wait for the answer (default 3s)",
    )
    for command in sub.choices.values():  # `worker-node save --log-level DEBUG …` works too
        _add_global_options(command, log_default=argparse.SUPPRESS, metrics_default=argparse.SUPPRESS)
    return p


def run_save(args: argparse.Namespace, access: Access) -> int:
    if not args.node and not args.listen:
        log.error("save: give --node (a capture node to subscribe to) or --listen (for nodes that connect out)")
        return 2
    for endpoint in args.listen:
        try:
            exposed = check_exposure(
                "--listen",
                parse_endpoint(endpoint, bind=True),
                secured=access.keys is not None,
                insecure=args.insecure,
                fix="Give --key and --server-key",
            )
        except ExposureError as exc:
            log.error("%s", exc)
            return 2
        if exposed:
            log.warning("INSECURE: --listen %s: no CURVE keys; frames come in plaintext from anyone", endpoint)
        if access.keys is not None and len(access.server_keys) != 1:
            log.error("--listen: give exactly one --server-key (the key of the nodes that connect in)")
            return 2
    policy = SavePolicy(
        every_n=args.every_n or 0,
        every_s=0.0 if args.every_n else (args.every or 1.0),
        keep_files=args.keep_files,
        keep_bytes=args.keep_bytes,
    )
    try:
        sink = SaveSink(args.out, policy)  # really writes a file there first
    except OSError as exc:
        log.error("%s", exc.strerror or exc)
        return 2
    signals = ShutdownSignals()
    ctx = zmq.Context()
    receiver = FrameReceiver(
        ctx, args.node, args.camera, wake_fd=signals.fd, pull=args.pull, listen=args.listen, access=access
    )
    start = time.monotonic()
    deadline = start + args.duration if args.duration else float("inf")
    next_status = start + args.status_interval
    log.info(
        "saving to %s (%s)",
        args.out,
        f"every {policy.every_n} frames" if policy.every_n else f"every {policy.every_s:g} s",
    )
    try:
        while not signals.requested:
            now = time.monotonic()
            if now >= deadline:
                break
            for _sub, frame in receiver.poll(min(next_status, deadline) - now):
                sink.offer(frame)
                if args.count and sink.count >= args.count:
                    return 0
            if time.monotonic() >= next_status:
                print_status(receiver.subscriptions.values(), extra=lambda sub: str(sink.errors.get(sub.name, "")))
                sink.errors.clear()
                next_status += args.status_interval
    finally:
        receiver.close()
        ctx.destroy(0)
        signals.drain()
        log.info("saved %d files to %s", sink.count, args.out)
    return 0


def clock_line(clock: ClockOffset) -> str:
    """'the node is 7.3 ms behind this host', never '-7.3 ms ahead'."""
    direction = "ahead of" if clock.seconds >= 0 else "behind"
    return (
        f"  clock: the node is {abs(clock.seconds) * 1000:.1f} ms {direction} this host "
        f"(± {clock.uncertainty * 1000:.1f} ms)"
    )


def run_describe(args: argparse.Namespace, access: Access) -> int:
    with zmq.Context() as ctx:
        try:
            reply, clock = describe_with_clock(ctx, args.node, args.timeout, access.client(args.node))
        except DiscoveryError as exc:
            log.error("%s", exc)
            return 1
    print(f"node {reply.node}: {len(reply.cameras)} camera(s)")
    print(clock_line(clock))
    for c in reply.cameras:
        line = f"  {c.camera:<16} {c.state:<12} {c.width}x{c.height} @ {c.fps:.1f} fps  {c.delivery:<11} {c.endpoint}"
        print(line + (f"  ({redact(c.reason)})" if c.reason else ""))  # a node may be older than this worker
    return 0


def run_process(args: argparse.Namespace, access: Access) -> int:
    try:
        if args.allow and not args.key:
            raise ValueError("--allow needs --key: the derived streams are served with this worker's key pair")
        options = ProcessOptions(
            tuple(args.node),
            tuple(args.camera),
            args.control,
            args.suffix,
            args.quality,
            args.name,
            access=access,
            curve=CurveFiles(args.key, args.allow) if args.allow else None,
            insecure=args.insecure,
            max_pixels=args.max_pixels,
        )
        factory = load_handler(args.handler)
        processor = FrameProcessor(factory, options)
    except (ValueError, HandlerError) as exc:
        log.error("%s", exc)
        return 2
    except zmq.ZMQError as exc:
        log.error("--control: %s", exc)
        return 2
    except Exception:
        log.exception("handler %s failed to start", args.handler)
        return 2
    signals = ShutdownSignals()
    processor.run(signals)
    signals.drain()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    threads.install()
    try:
        code = run(args)
    except Exception as exc:  # a bug: one line that says so, the traceback at DEBUG
        log.error(
            "stopped by an internal error: %s: %s (a bug: please report it; --log-level DEBUG shows the traceback)",
            type(exc).__name__,
            str(exc)[:300],
        )
        log.debug("traceback", exc_info=exc)
        return 1
    return 1 if threads.failure() else code  # a thread died, and said why


def run(args: argparse.Namespace) -> int:
    try:
        serve_metrics(args.metrics_port)
    except OSError as exc:
        log.error("--metrics-port: %s", bind_error(str(args.metrics_port), exc))
        return 2
    nodes = [args.node] if isinstance(args.node, str) else args.node
    try:
        access = Access.from_files(
            args.key, args.server_key, nodes, args.max_message_size, getattr(args, "follow_host", ())
        )
    except KeyFileError as exc:
        log.error("%s", exc)
        return 2
    if args.command == "save":
        try:
            return run_save(args, access)
        except BindError as exc:
            log.error("--listen: %s", exc)
            return 2
    if args.command == "top":
        return run_top(args.node, args.camera, args.refresh, args.count, access)
    if args.command == "display":
        width, height = args.size
        return run_display(
            DisplayOptions(
                tuple(args.node), tuple(args.camera), width, height, args.title, args.max_fps, access, args.max_pixels
            )
        )
    if args.command == "web":
        warning = http_exposure_warning("the web viewer", args.listen, "sees the cameras")
        if warning:
            log.warning("%s", warning)
        quiet_client_errors()
        return run_web(WebOptions(tuple(args.node), tuple(args.camera), args.listen.host, args.listen.port, access))
    if args.command == "process":
        return run_process(args, access)
    return run_describe(args, access)


if __name__ == "__main__":
    sys.exit(main())
