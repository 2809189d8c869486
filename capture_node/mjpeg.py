"""HTTP MJPEG cameras, passed through: the camera's own JPEGs are published as they arrive.

Through OpenCV, an MJPEG camera costs a JPEG decode and a JPEG encode per frame for a picture
that was a JPEG already. Here the multipart/x-mixed-replace stream is split into its parts and
each part is checked without decoding (its frame header: a JPEG, of a size any worker may
decode) and handed on as bytes. Only a resize decodes (camera.py / sources.py decide).

A server that answers anything but a multipart stream is not an MJPEG camera: OpenVideoSource
(OpenCV) gets the URL instead, as before.
"""

from __future__ import annotations

import base64
import http.client
from urllib.parse import unquote, urlsplit

from framebus.common import jpeg
from framebus.common.redact import redact

MAX_PART_BYTES = 16 << 20  # a 4K JPEG at quality 100 is ~5 MB
MAX_HEADER_LINES = 32
MAX_LINE_BYTES = 4096


class NotMjpegError(Exception):
    """The URL answers, but not with an MJPEG stream (let OpenCV try it)."""


class MjpegError(RuntimeError):
    """The stream broke or sent something that is not a camera's JPEG."""


class MjpegStream:
    """One HTTP connection to an MJPEG camera; read() returns the next JPEG's bytes."""

    def __init__(self, url: str, open_timeout: float, read_timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise NotMjpegError(f"not an HTTP URL: {redact(url)}")
        connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._conn = connection_type(parts.hostname or "", parts.port, timeout=open_timeout)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = {"Accept": "multipart/x-mixed-replace, image/jpeg"}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        try:
            self._conn.request("GET", path, headers=headers)
            response = self._conn.getresponse()
        except OSError as exc:  # refused, unreachable, timed out: OpenCV would wait as long again
            self._conn.close()
            raise MjpegError(f"HTTP request failed: {exc}") from None
        except http.client.HTTPException as exc:
            self._conn.close()
            raise NotMjpegError(f"not HTTP: {exc}") from None
        kind = response.headers.get("Content-Type", "")
        boundary = _boundary(kind)
        if response.status != 200 or boundary is None:
            self._conn.close()
            raise NotMjpegError(f"the server answered {response.status} with {kind!r}")
        self._response = response
        self._delimiter = b"--" + boundary
        self._pending: bytes | None = None  # a boundary line read while looking for one
        if self._conn.sock is not None:
            self._conn.sock.settimeout(read_timeout)

    def read(self) -> bytes | None:
        """The next part's JPEG, or None when the stream ended or timed out."""
        try:
            return self._read_part()
        except (OSError, http.client.HTTPException):  # timeouts are OSErrors
            return None

    def _read_part(self) -> bytes | None:
        line = self._line()
        while line is not None and not line.startswith(self._delimiter):
            if line.strip():  # epilogue or junk between parts: only blank lines are allowed
                raise MjpegError("MJPEG stream: data between parts where a boundary line was expected")
            line = self._line()
        if line is None or line.startswith(self._delimiter + b"--"):
            return None
        length = None
        for _ in range(MAX_HEADER_LINES):
            header = self._line()
            if header is None:
                return None
            if not header.strip():
                break
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                if not value.strip().isdigit() or int(value) > MAX_PART_BYTES:
                    raise MjpegError(f"MJPEG part: bad Content-Length {value.strip()[:40]!r}")
                length = int(value)
        else:
            raise MjpegError(f"MJPEG part: more than {MAX_HEADER_LINES} header lines")
        data = self._response.read(length) if length is not None else self._until_boundary()
        if length is not None and len(data) < length:
            return None
        return data

    def _line(self) -> bytes | None:
        if self._pending is not None:
            line, self._pending = self._pending, None
            return line
        line = self._response.readline(MAX_LINE_BYTES + 1)
        if not line:
            return None
        if len(line) > MAX_LINE_BYTES:
            raise MjpegError("MJPEG stream: a line longer than 4096 bytes where headers were expected")
        return line.rstrip(b"\r\n")

    def _until_boundary(self) -> bytes:
        """A part without Content-Length: everything up to the next boundary line (kept for
        the next read)."""
        data = bytearray()
        at_line_start = True
        while True:
            chunk = self._response.readline(65536)
            if not chunk:
                break
            if at_line_start and chunk.startswith(self._delimiter):
                self._pending = chunk.rstrip(b"\r\n")
                break
            data += chunk
            at_line_start = chunk.endswith(b"\n")
            if len(data) > MAX_PART_BYTES:
                raise MjpegError(f"MJPEG part larger than {MAX_PART_BYTES >> 20} MB")
        return bytes(data[:-2] if data.endswith(b"\r\n") else data.rstrip(b"\n"))

    def close(self) -> None:
        self._conn.close()


def checked_size(data: bytes, max_pixels: int = jpeg.MAX_DECODE_PIXELS) -> tuple[int, int]:
    """(width, height) from the JPEG's own frame header; MjpegError for a part that is not a
    JPEG or declares more pixels than any worker decodes by default."""
    try:
        width, height = jpeg.frame_size(data)
    except jpeg.JpegError as exc:
        raise MjpegError(f"MJPEG part is not a JPEG: {exc}") from None
    if width * height > max_pixels:
        raise MjpegError(f"MJPEG part declares {width}x{height} pixels, more than {max_pixels:,}")
    return width, height


def _boundary(content_type: str) -> bytes | None:
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/x-mixed-replace":
        return None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary" and value.strip().strip('"'):
            boundary = value.strip().strip('"').encode("latin-1")
            return boundary[2:] if boundary.startswith(b"--") else boundary  # some cameras include the dashes
    return None
