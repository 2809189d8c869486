"""A real RTSP camera for the tests: GStreamer's RTSP server, run with the system Python.

    /usr/bin/python3 tests/support/rtsp_server.py --port 0 --width 1280 --height 720 --fps 30 --source ball

Prints `READY rtsp://127.0.0.1:PORT/PATH` once the media is prepared (a client connecting
right after a plain start can get 503 from a shared factory, so the media is constructed and
prepared up front). Sources: `ball` (cheap, mostly black), `clock` (the wall-clock time in ms
drawn as a barcode, to measure latency), `images` (a looped folder of natural-looking JPEGs,
for anything measured), `h264-file` (an Annex-B H.264 file sent as it is, looped: no encoder in
the server, for benchmarks of many cameras), `audio` (no video at all). `--mounts N` serves the
same media at N paths, PATH0 ... PATH(N-1), each its own pipeline; READY names the first. Runs
until SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import signal
import socket
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

CLOCK_BITS = 44  # ms since the epoch fit in 44 bits until the year 2527
H264 = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! rtph264pay name=pay0 pt=96"


def launch_line(args: argparse.Namespace) -> str:
    raw = f"video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1"
    if args.source == "ball":
        return f"( videotestsrc is-live=true pattern=ball ! {raw} ! videoconvert ! video/x-raw,format=I420 ! {H264} )"
    if args.source == "clock":
        return f'( appsrc name=clock is-live=true format=time caps="{raw},format=I420" ! {H264} )'
    if args.source == "images":
        return (
            f"( multifilesrc location={args.images_dir}/%05d.jpg loop=true caps=image/jpeg,framerate={args.fps}/1 "
            f"! jpegdec ! videoscale ! videoconvert ! {raw},format=I420 ! {H264} )"
        )
    if args.source == "h264-file":
        caps = f"video/x-h264,stream-format=byte-stream,framerate={args.fps}/1"
        return (
            f"( multifilesrc location={args.file} loop=true caps={caps} ! h264parse "
            "! identity sync=true ! rtph264pay name=pay0 pt=96 )"
        )
    if args.source == "audio":
        return "( audiotestsrc is-live=true ! audioconvert ! mulawenc ! rtppcmupay name=pay0 pt=0 )"
    raise SystemExit(f"unknown source {args.source}")


def clock_frame(width: int, height: int) -> bytes:
    """An I420 frame whose luma carries the current time in ms as black/white stripes."""
    now_ms = int(time.time() * 1000)
    stripe = width // CLOCK_BITS
    row = b"".join((b"\xff" if now_ms >> bit & 1 else b"\x00") * stripe for bit in range(CLOCK_BITS))
    row += b"\x80" * (width - len(row))
    return row * height + b"\x80" * (width * height // 2)


def feed_clock(media: GstRtspServer.RTSPMedia, args: argparse.Namespace) -> None:
    """Push frames from a thread: media.prepare() blocks the main loop until the first arrives."""
    src = media.get_element().get_by_name("clock")

    def push() -> None:
        interval = 1 / args.fps
        next_at = time.monotonic()
        for n in itertools.count():
            buffer = Gst.Buffer.new_wrapped(clock_frame(args.width, args.height))
            buffer.pts = n * Gst.SECOND // args.fps
            buffer.duration = Gst.SECOND // args.fps
            src.emit("push-buffer", buffer)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    threading.Thread(target=push, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", default="/stream")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--source", default="ball", choices=["ball", "clock", "images", "h264-file", "audio"])
    parser.add_argument("--images-dir")
    parser.add_argument("--file", help="the Annex-B H.264 file of --source h264-file")
    parser.add_argument("--mounts", type=int, default=1, help="serve the media at N paths: PATH0 ... PATH(N-1)")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    Gst.init(None)
    loop = GLib.MainLoop()
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    paths = [args.path] if args.mounts == 1 else [f"{args.path}{i}" for i in range(args.mounts)]
    for path in paths:
        server.get_mount_points().add_factory(path, make_factory(args, server))
    server.attach(None)

    def warm_up() -> None:
        """DESCRIBE our own streams once, so the shared media is prepared before READY (a
        client opening right after start could otherwise get 503). Calling media.prepare()
        from the main loop instead deadlocks now and then."""
        urls = [f"rtsp://{args.address}:{server.get_bound_port()}{path}" for path in paths]
        for url in urls:
            describe(url, args, server.get_bound_port())
        print(f"READY {urls[0]}", flush=True)

    GLib.idle_add(lambda: threading.Thread(target=warm_up, daemon=True).start())
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, loop.quit)
    loop.run()
    sys.exit(0)


def describe(url: str, args: argparse.Namespace, port: int) -> None:
    request = f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n"
    if args.user:
        token = base64.b64encode(f"{args.user}:{args.password or ''}".encode()).decode()
        request += f"Authorization: Basic {token}\r\n"
    for _ in range(100):
        with socket.create_connection((args.address, port), timeout=10) as conn:
            conn.sendall((request + "\r\n").encode())
            if conn.recv(4096).startswith(b"RTSP/1.0 200"):
                break


def make_factory(args: argparse.Namespace, server: GstRtspServer.RTSPServer) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    factory.set_shared(True)
    factory.set_suspend_mode(GstRtspServer.RTSPSuspendMode.NONE)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    if args.source == "clock":
        factory.connect("media-configure", lambda _factory, media: feed_clock(media, args))
    return factory


if __name__ == "__main__":
    main()
