"""A small HTTP/MJPEG camera (multipart/x-mixed-replace), as many IP cameras serve."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from framebus.common import jpeg
from tests.support.media import numbered_frame

BOUNDARY = b"frame"


def numbered_jpeg(index: int) -> bytes:
    return jpeg.encode_bgr(numbered_frame(index), 90)


class MjpegCamera:
    """`part(index)` makes each part's payload; `content_length=False` leaves the header out
    (some cameras do: the reader must find the next boundary)."""

    def __init__(
        self, fps: float = 15.0, part: Callable[[int], bytes] = numbered_jpeg, content_length: bool = True
    ) -> None:
        self.stop = threading.Event()
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path != "/stream.mjpg":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
                self.end_headers()
                index, next_at = 0, time.monotonic() + 1 / fps
                try:
                    while not camera.stop.wait(max(0.0, next_at - time.monotonic())):  # paced: no drift
                        next_at += 1 / fps
                        data = part(index)
                        self.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n")
                        length = f"Content-Length: {len(data)}\r\n" if content_length else ""
                        self.wfile.write(f"{length}\r\n".encode() + data + b"\r\n")
                        index += 1
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
