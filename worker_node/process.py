"""Run a user function on the newest frame of cameras and republish what it makes.

    from framebus.worker_node import process

    def count_bright(image, header):
        return {"bright": int((image > 200).sum())}

    process.run(count_bright, node="tcp://edge1:5555", camera="cam1")

The handler always gets the newest frame: frames are received on conflated sockets and read
only when the handler is free, so a slow handler lowers the output rate, never builds a
backlog. Its output (a frame and/or a dict of results) goes out as the derived stream
`<camera>/<suffix>` (default `cam1/annotated`) on this worker's own PUB socket, with a describe
endpoint (`control`) like a capture node's. A handler that raises is logged with its traceback
(rate-limited) and the next frame is handled as usual.

With `pool="faces"`, this worker is one member of a worker pool: it pulls frames, each frame is
handed to one member only, and its results go back to the capture node with its next request;
the node publishes the pool's results as the one stream `<camera>/faces` (docs/pools.md). Such a
worker serves no stream of its own.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from framebus.common import jpeg, threads
from framebus.common.cli_args import endpoint_arg
from framebus.common.endpoint import parse_endpoint
from framebus.common.logs import setup_logging
from framebus.common.protocol import (
    CameraInfo,
    Frame,
    PoolResult,
    ProtocolError,
    validate_camera_id,
    validate_pool_name,
)
from framebus.common.ratelimit import RateLimitedLog
from framebus.common.security import CurveFiles, CurveServer, check_exposure
from framebus.common.shutdown import ShutdownSignals
from framebus.worker_node import flags
from framebus.worker_node.access import Access
from framebus.worker_node.handler import (
    Handler,
    HandlerError,
    HandlerFactory,
    as_factory,
    load_handler,
    normalise,
    results_meta,
)
from framebus.worker_node.pixel_limit import PixelLimit
from framebus.worker_node.republish import DEFAULT_CONTROL, DerivedStreams
from framebus.worker_node.sink import BaseSink, Driver, ReceiveOptions, ReceiverView
from framebus.worker_node.subscription import Subscription

log = logging.getLogger("worker_node.processing")  # the name scripts and docs know
command_log = logging.getLogger("worker_node")  # what the command itself says, under the name it always had

TRACEBACK_EVERY_S = 5.0
HOUSEKEEPING_S = 0.5


@dataclass(frozen=True)
class ProcessOptions:
    nodes: tuple[str, ...]
    cameras: tuple[str, ...]
    control: str = DEFAULT_CONTROL  # describe endpoint of the derived streams; tcp://host:* for any port
    suffix: str = "annotated"  # derived stream id: <camera>/<suffix>
    quality: int = 80  # JPEG quality of output frames
    name: str = "process-worker"
    log_every_s: float = 1.0  # results are logged at most this often per camera
    access: Access = field(default_factory=Access)  # how to reach the nodes read from
    curve: CurveFiles | None = None  # keys for the derived streams this worker serves
    insecure: bool = False  # without curve, allow serving on addresses other hosts can reach
    max_pixels: int | None = None  # pictures decoded at most; None: each camera's described size (pixel_limit)
    pool: str = ""  # a member of this worker pool: results go to the node, which publishes <camera>/<pool>

    def __post_init__(self) -> None:
        """Raises ValueError (EndpointError, ExposureError) naming the value that is wrong."""
        if not self.nodes:
            raise ValueError("give at least one node endpoint")
        for node in self.nodes:
            parse_endpoint(node, "node")
        if not self.cameras:
            raise ValueError("give at least one camera id")
        if self.pool:
            self._check_pool()
        for camera in () if self.pool else self.cameras:  # a pool member publishes no stream of its own
            try:
                validate_camera_id(f"{camera}/{self.suffix}")
            except ValueError as exc:  # name the setting: the user typed the suffix, not this id
                raise ValueError(f"suffix {self.suffix!r}: the output stream id is wrong: {exc}") from None
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be between 1 and 100, got {self.quality}")
        control = parse_endpoint(self.control, "control", bind=True, schemes=("tcp", "ipc", "inproc"))
        if self.pool:
            return  # a pool member serves nothing: the node publishes the pool's stream
        fix = "Give --key and --allow"
        if check_exposure("control", control, secured=self.curve is not None, insecure=self.insecure, fix=fix):
            log.warning("INSECURE: control %s: no CURVE keys; derived streams go out in plaintext to anyone", control)

    def _check_pool(self) -> None:
        try:
            validate_pool_name(self.pool)
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None
        for camera in self.cameras:
            try:
                validate_camera_id(f"{camera}/{self.pool}")
            except ValueError:
                raise ValueError(
                    f"pool {self.pool!r}: camera {camera!r} has 4 parts already, so its pool stream "
                    f"{camera}/{self.pool} would be no valid camera id"
                ) from None


class FrameProcessor:
    """Handles the newest frame of each camera in turn and publishes what the handler makes: a
    sink (worker_node.sink) that ticks at once while frames wait. `stop()` (or SIGINT/SIGTERM
    via run()) ends it. `factory` makes one handler per camera: see handler.as_factory /
    handler.load_handler."""

    done = False

    def __init__(self, factory: HandlerFactory, options: ProcessOptions) -> None:
        self.options = options
        self._factory = factory
        self._spare: Handler | None = self._factory()  # fail now, not on the first frame
        self._handlers: dict[str, Handler] = {}
        self._ctx = zmq.Context()  # the derived streams'; the driver has its own for receiving
        self._security: CurveServer | None = None
        self.streams: DerivedStreams | None = None  # none for a pool member: the node publishes
        self.member = f"{options.name}@{socket.gethostname()}:{os.getpid()}"  # in a pool's results
        if not options.pool:
            self._open_streams()
        self.endpoint = self.streams.endpoint if self.streams is not None else ""
        self._last_traceback: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._last_results_log: dict[str, float] = {}
        self._log = RateLimitedLog(log)
        self._pixels = PixelLimit(options.max_pixels)
        self._camera_info: Mapping[str, CameraInfo] = {}  # the receiver's: what each camera described
        # The newest unhandled frame per camera, oldest-served camera first: with several cameras
        # and a slow handler, each camera's frame is refreshed right before it is handled.
        self._pending: dict[str, tuple[Subscription, Frame]] = {}
        self.handled = 0
        self.failed = 0
        receive = ReceiveOptions(options.nodes, options.cameras, access=options.access, pool=options.pool)
        self.driver = Driver([self, _UpstreamStatus(self)] if self.streams is not None else [self], receive)

    def _open_streams(self) -> None:
        try:  # a port taken must not leave the key watcher's thread or sockets behind
            self._security = self.options.curve.server(self._ctx) if self.options.curve else None
            self.streams = DerivedStreams(self._ctx, self.options.control, self.options.name, self._security)
        except BaseException:
            self._close_resources()
            raise
        try:
            for camera in self.options.cameras:  # described (as connecting) before the first frame
                self.streams.stream(self._derived(camera))
        except BaseException:
            self.streams.close()
            self._close_resources()
            raise

    def stop(self) -> None:
        """From any thread."""
        self.driver.stop()

    def run(self, signals: ShutdownSignals | None = None) -> None:
        """Until stop(), or SIGINT/SIGTERM when `signals` are given."""
        self.driver.run(signals)

    # ------------------------------------------------------------------ the sink

    @property
    def cadence(self) -> float:
        return 0.0 if self._pending else math.inf

    def start(self, receiver: ReceiverView) -> None:
        self._camera_info = receiver.camera_info
        if self.streams is not None:
            log.info("control endpoint %s", self.endpoint)
        else:
            log.info("member %s of pool %s", self.member, self.options.pool)

    def on_frame(self, sub: Subscription, frame: Frame) -> None:
        self._pending[sub.name] = (sub, frame)  # a newer frame keeps its camera's place in the turn

    def on_tick(self, receiver: ReceiverView) -> None:
        if self._pending:
            self._handle(*self._pending.pop(next(iter(self._pending))))

    def close(self) -> None:
        if self.streams is not None:
            self.streams.close()
        self._close_resources()
        log.info("handled %d frames (%d raised)", self.handled, self.failed)

    def _close_resources(self) -> None:
        if self._security is not None:
            self._security.close()
        self._ctx.destroy(0)

    def send_status(self, sub: Subscription) -> None:
        if self.streams is not None:
            self.streams.send_status(self._derived(sub.name), sub.status)

    def _derived(self, camera: str) -> str:
        return f"{camera}/{self.options.suffix}"

    def _handler_for(self, camera: str) -> Handler:
        handler = self._handlers.get(camera)
        if handler is None:
            handler, self._spare = (self._spare or self._factory()), None
            self._handlers[camera] = handler
        return handler

    def _handle(self, sub: Subscription, frame: Frame) -> None:
        """Run the handler on the frame and publish what it made; a pool member hands it back
        (or hands back nothing, so that the node gives it the next frame)."""
        output = self._run(sub, frame)
        if self.streams is None:
            result = None
            if output is not None:
                data, size, meta = output
                meta["member"] = self.member
                picture = data is not frame.jpeg  # the source JPEG is the node's already: not sent back
                result = PoolResult(frame.header.seq, meta, size if picture else None, data if picture else None)
            sub.hand_back(frame.header.seq, result)
        elif output is not None:
            self.streams.publish(self._derived(sub.name), frame.header, *output)

    def _run(
        self, sub: Subscription, frame: Frame
    ) -> tuple[bytes | memoryview, tuple[int, int], dict[str, object]] | None:
        """(output JPEG, its size, its meta), or None when the frame gave nothing (logged)."""
        camera = sub.name
        try:
            image = self._pixels.decode_bgr(camera, frame.jpeg, self._camera_info.get(camera), sub.stats)
        except jpeg.JpegTooLargeError:
            return None  # counted and logged
        except jpeg.JpegError as exc:
            self._log.warning(f"decode-{camera}", "camera %s: %s; frame skipped", camera, exc)
            return None
        started = time.monotonic()
        try:
            output = normalise(self._handler_for(camera)(image, frame.header))
        except Exception:  # the user's code: report it and go on with the next frame
            self.failed += 1
            self._report_failure(camera, frame.header.seq)
            return None
        self.handled += 1
        meta: dict[str, object] = {
            "source": {"camera": camera, "seq": frame.header.seq},
            "handler_ms": round((time.monotonic() - started) * 1000, 1),
        }
        if output.results:
            try:
                meta["results"] = results_meta(output.results)
            except HandlerError as exc:
                self._log.warning(f"results-{camera}", "camera %s: %s", camera, exc)
            self._log_results(camera, frame.header.seq, meta.get("results"))
        if output.image is None:
            data: bytes | memoryview = frame.jpeg  # the source JPEG as is: no re-encode
            size = (frame.header.width, frame.header.height)
        else:
            data = jpeg.encode_bgr(output.image, self.options.quality)
            size = (output.image.shape[1], output.image.shape[0])
        return data, size, meta

    def _report_failure(self, camera: str, seq: int) -> None:
        """The traceback at most every TRACEBACK_EVERY_S per camera, with a count of the others."""
        now = time.monotonic()
        if now - self._last_traceback.get(camera, -TRACEBACK_EVERY_S) < TRACEBACK_EVERY_S:
            self._suppressed[camera] = self._suppressed.get(camera, 0) + 1
            return
        self._last_traceback[camera] = now
        others = self._suppressed.pop(camera, 0)
        more = f" ({others} more failures since the last report)" if others else ""
        log.exception("camera %s: handler raised on frame %d; going on with the next frame%s", camera, seq, more)

    def _log_results(self, camera: str, seq: int, results: object) -> None:
        now = time.monotonic()
        if now - self._last_results_log.get(camera, -self.options.log_every_s) >= self.options.log_every_s:
            self._last_results_log[camera] = now
            log.info("camera %s: frame %d results %s", camera, seq, results)


class _UpstreamStatus(BaseSink):
    """Each derived stream tells the state of its source camera (a sink that only ticks)."""

    cadence = HOUSEKEEPING_S

    def __init__(self, processor: FrameProcessor) -> None:
        self._processor = processor

    def on_tick(self, receiver: ReceiverView) -> None:
        for sub in receiver.subscriptions.values():
            self._processor.send_status(sub)


def run(
    handler: Handler | type,
    node: str | Sequence[str],
    camera: str | Sequence[str],
    control: str = DEFAULT_CONTROL,
    suffix: str = "annotated",
    quality: int = 80,
    key: str | Path | None = None,
    server_key: str | Path | None = None,
    allow: str | Path | None = None,
    insecure: bool = False,
    follow_hosts: Sequence[str] = (),
    max_pixels: int | None = None,
    pool: str = "",
) -> None:
    """Process until SIGINT/SIGTERM (call from the main thread). `handler` is a function
    ``(image, header) -> None | dict | frame | (frame, dict)``, or a class (one instance per camera).
    `key`/`server_key` reach CURVE nodes; `allow` serves the derived streams with CURVE too;
    `follow_hosts` are hosts besides each node's own that its described streams may be on.
    `max_pixels`: pictures above it are refused before decoding (default: each camera's
    described size with a margin, see worker_node.pixel_limit). `pool`: share the cameras' frames
    with the other members of this worker pool, each frame handled by one member; the capture
    node publishes the results as `<camera>/<pool>` (docs/pools.md). A wrong value raises ValueError
    naming it. Results and problems are logged: to stderr in the nodes' format, unless the
    application configured logging itself (then its configuration is left as it is)."""
    if not logging.getLogger().handlers:  # a script's one-liner would otherwise print nothing
        setup_logging()
    if allow and not key:
        raise ValueError("allow needs key: the derived streams are served with this worker's key pair")
    nodes = (node,) if isinstance(node, str) else tuple(node)
    options = ProcessOptions(
        nodes=nodes,
        cameras=(camera,) if isinstance(camera, str) else tuple(camera),
        control=control,
        suffix=suffix,
        quality=quality,
        access=Access.from_files(key, [server_key] if server_key else [], nodes, follow_hosts=follow_hosts),
        curve=CurveFiles(Path(key), Path(allow)) if key and allow else None,
        insecure=insecure,
        max_pixels=max_pixels,
        pool=pool,
    )
    signals = ShutdownSignals()
    processor = FrameProcessor(as_factory(handler, getattr(handler, "__name__", "handler")), options)
    processor.run(signals)
    signals.drain()
    failed = threads.failure()
    if failed:
        raise RuntimeError(f"processing stopped because {failed}")


# ---------------------------------------------------------------------------- `worker-node process`


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    proc = sub.add_parser(
        "process",
        help="run a function on the newest frames and republish",
        description="Call HANDLER(image, header) with the newest decoded frame of each camera; its results are "
        "logged and published as metadata, its output frames as the stream <camera>/<suffix>.",
    )
    flags.add_nodes(proc, camera_required=True)
    proc.add_argument(
        "--handler",
        required=True,
        metavar="MODULE:NAME",
        help="e.g. framebus.worker_node.handlers.motion:MotionDetector",
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
    proc.add_argument(
        "--pool", default="", metavar="NAME",
        help="share the frames with the other workers of this pool: each frame goes to one of them, and the "
        "capture node publishes the results as the stream <camera>/NAME (no --control needed)",
    )  # fmt: skip
    flags.add_max_pixels(proc)
    proc.set_defaults(func=main)
    return proc


def main(args: argparse.Namespace) -> int:
    access = flags.access(args)
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
            pool=args.pool,
        )
        factory = load_handler(args.handler)
        processor = FrameProcessor(factory, options)
    except (ValueError, HandlerError) as exc:
        command_log.error("%s", exc)
        return 2
    except zmq.ZMQError as exc:
        command_log.error("--control: %s", exc)
        return 2
    except Exception:
        command_log.exception("handler %s failed to start", args.handler)
        return 2
    flags.serve_metrics_of(args, processor.driver)
    processor.run(ShutdownSignals())
    return 0
