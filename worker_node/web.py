"""`worker-node web`: a live grid of the cameras in any browser, served with aiohttp.

    GET /                      the page: one tile per camera, stats and state on each
    GET /wall                  the page's WebSocket: every visible camera's newest JPEG (web_wall)
    GET /wall-worker.js        the page's worker: the socket, decoding and drawing off its main thread
    GET /cameras/<id>.mjpg     MJPEG stream (multipart/x-mixed-replace) of the JPEGs from the wire
    GET /cameras/<id>.jpg      the newest frame
    GET /api/status            JSON: per camera state, fps, age, drops, connected clients, frames sent

Frames are served exactly as they came over ZeroMQ: no decode, no re-encode. Each stream
client sends the newest frame whenever it is ready for one (web_feed.CameraFeed), and its
socket send buffer is kept small so that the kernel cannot queue seconds of frames for a slow
browser either. A client that goes away is cancelled at once (handler cancellation) and
counted out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources

from aiohttp import web

from framebus.common.bind_error import bind_error
from framebus.common.cli_args import arg_type
from framebus.common.endpoint import parse_listen
from framebus.common.security import http_exposure_warning
from framebus.common.shutdown import ShutdownSignals
from framebus.worker_node import flags, metrics
from framebus.worker_node.access import Access
from framebus.worker_node.http_log import quiet_client_errors
from framebus.worker_node.web_feed import CameraFeed, FeedGoneError, FeedHub, ReceivingThread
from framebus.worker_node.web_host import AllowedHosts, allowed_name, own_names
from framebus.worker_node.web_wall import WALL_CLIENTS, wall

log = logging.getLogger("worker_node.web")
command_log = logging.getLogger("worker_node")  # what the command itself says, under the name it always had

BOUNDARY = "framebusframe"
SEND_BUFFER = 128 * 1024  # bytes the kernel may hold per stream client (~1 frame at 720p)
HUB: web.AppKey[FeedHub] = web.AppKey("hub", FeedHub)
STREAMS = web.AppKey("streams", set[asyncio.Task[object]])


@dataclass(frozen=True)
class WebOptions:
    nodes: tuple[str, ...]
    cameras: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port (logged)
    access: Access = field(default_factory=Access)
    metrics: bool = False  # the cameras in /metrics (--metrics-port)
    allow_hosts: tuple[str, ...] = ()  # names besides IPs, localhost and this host's own (--allow-host)


def _feed(request: web.Request) -> CameraFeed:
    feed = request.app[HUB].feeds.get(request.match_info["camera"])
    if feed is None:
        raise web.HTTPNotFound(text=f"no camera {request.match_info['camera']!r} (see /api/status)\n")
    return feed


def static_file(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The page and its worker script, from the package (read on each request: a few KB)."""

    async def serve(_request: web.Request) -> web.Response:
        text = resources.files("framebus.worker_node").joinpath(f"static/{name}").read_text(encoding="utf-8")
        return web.Response(text=text, content_type=content_type, headers={"Cache-Control": "no-cache"})

    return serve


async def status(request: web.Request) -> web.Response:
    body = request.app[HUB].status()
    return web.Response(text=json.dumps(body), content_type="application/json", headers={"Cache-Control": "no-store"})


async def snapshot(request: web.Request) -> web.Response:
    feed = _feed(request)
    if feed.frame is None:
        raise web.HTTPServiceUnavailable(text=f"camera {feed.camera!r} has sent no frame yet\n")
    h = feed.frame.header
    return web.Response(
        body=bytes(feed.frame.jpeg),
        content_type="image/jpeg",
        headers={"Cache-Control": "no-store", "X-Seq": str(h.seq), "X-Capture-Ns": str(h.capture_ns)},
    )


@contextmanager
def cancelled_at_shutdown(request: web.Request) -> Iterator[None]:
    """A long-lived response (a stream, the wall) that shutdown ends at once."""
    task = asyncio.current_task()
    streams = request.app[STREAMS]
    if task is not None:
        streams.add(task)
    try:
        yield
    finally:
        if task is not None:
            streams.discard(task)


async def stream(request: web.Request) -> web.StreamResponse:
    with cancelled_at_shutdown(request):
        return await _stream(request)


async def wall_socket(request: web.Request) -> web.StreamResponse:
    with cancelled_at_shutdown(request):
        return await wall(request, request.app[HUB])


async def _stream(request: web.Request) -> web.StreamResponse:
    feed = _feed(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            "Cache-Control": "no-cache, no-store",
            "Pragma": "no-cache",
        }
    )
    await response.prepare(request)
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    feed.clients += 1
    log.info("camera %s: stream client %s connected (%d now)", feed.camera, request.remote, feed.clients)
    try:
        version = 0
        while True:
            version, frame = await feed.newer_than(version)
            h = frame.header
            part = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.jpeg)}\r\n"
                f"X-Seq: {h.seq}\r\nX-Capture-Ns: {h.capture_ns}\r\n\r\n"
            ).encode()
            await response.write(part)
            await response.write(frame.jpeg)
            await response.write(b"\r\n")
            feed.sent += 1
    except (ConnectionError, RuntimeError):  # the client went away mid-write
        pass
    except FeedGoneError:
        log.info("camera %s: no longer described; stream client %s ended", feed.camera, request.remote)
    finally:
        feed.clients -= 1
        log.info("camera %s: stream client %s gone (%d left)", feed.camera, request.remote, feed.clients)
    return response


async def _cancel_streams(app: web.Application) -> None:
    tasks: set[asyncio.Task[object]] = app[STREAMS]
    for task in tasks.copy():
        task.cancel()


def build_app(hub: FeedHub, hosts: AllowedHosts) -> web.Application:
    app = web.Application(middlewares=[hosts.middleware()])
    app[HUB] = hub
    app[STREAMS] = set()
    app[WALL_CLIENTS] = set()
    app.router.add_get("/", static_file("index.html", "text/html"))
    app.router.add_get("/wall-worker.js", static_file("wall-worker.js", "text/javascript"))
    app.router.add_get("/api/status", status)
    app.router.add_get("/wall", wall_socket)
    app.router.add_get("/cameras/{camera:.+}.mjpg", stream)
    app.router.add_get("/cameras/{camera:.+}.jpg", snapshot)
    app.on_shutdown.append(_cancel_streams)
    return app


async def serve(options: WebOptions, signals: ShutdownSignals) -> int:
    loop = asyncio.get_running_loop()
    hub = FeedHub()
    hosts = AllowedHosts({options.host, *own_names(), *options.allow_hosts})
    runner = web.AppRunner(build_app(hub, hosts), handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, options.host, options.port).start()
    except OSError as exc:
        log.error("--listen: %s", bind_error(f"{options.host}:{options.port}", exc))
        await runner.cleanup()
        return 2
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    log.info("web viewer on http://%s:%d/", shown, port)
    stop = asyncio.Event()

    def receiving_died(reason: str) -> None:
        hub.failure = reason  # the page would show the last state for ever: stop serving it
        stop.set()

    receiving = ReceivingThread(loop, hub, options.nodes, options.cameras, options.access, receiving_died)
    if options.metrics:
        metrics.register(receiving.driver.subscriptions)
    receiving.start()

    def on_signal() -> None:
        signals.drain()
        if signals.requested:
            stop.set()

    loop.add_reader(signals.fd, on_signal)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(signals.fd)
        log.info("stopping")
        await runner.cleanup()
        await asyncio.to_thread(receiving.stop)
    return 1 if hub.failure else 0


# ---------------------------------------------------------------------------- `worker-node web`


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    web = sub.add_parser(
        "web",
        help="serve a live web page of the cameras",
        description="A page with every camera live in one grid (over one WebSocket, /wall), /cameras/<id>.mjpg, /cameras/<id>.jpg and /api/status.",
    )
    flags.add_nodes(web)
    web.add_argument(
        "--listen", type=arg_type(parse_listen), default=parse_listen("127.0.0.1:8080"), metavar="HOST:PORT",
        help="where to serve (default 127.0.0.1:8080; 0.0.0.0:8080 for other hosts; port 0: any free port)",
    )  # fmt: skip
    web.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME", type=arg_type(allowed_name),
        help="also answer requests addressed to NAME (repeatable): a reverse proxy's or DNS alias's name. "
        "IP addresses, localhost and this host's names are always answered; other names are refused "
        "(DNS rebinding, docs/security.md)",
    )  # fmt: skip
    web.set_defaults(func=main)
    return web


def main(args: argparse.Namespace) -> int:
    access = flags.access(args)
    warning = http_exposure_warning("the web viewer", args.listen, "sees the cameras")
    if warning:
        command_log.warning("%s", warning)
    quiet_client_errors()
    options = WebOptions(
        tuple(args.node),
        tuple(args.camera),
        args.listen.host,
        args.listen.port,
        access,
        args.metrics_port is not None,
        tuple(args.allow_host),
    )
    signals = ShutdownSignals()  # before the event loop: it leaves SIGINT to them then
    return asyncio.run(serve(options, signals))
