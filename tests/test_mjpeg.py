"""HTTP MJPEG cameras pass through: the camera's own JPEG reaches the worker byte for byte (no
decode, no encode in the node), with or without Content-Length; a part that is not a JPEG, or
declares more pixels than workers decode, ends the capture (it reconnects) with one line; a
URL that answers but is not MJPEG still goes to OpenCV."""

from __future__ import annotations

import numpy as np
import pytest

from framebus.capture_node.mjpeg import MjpegStream, NotMjpegError
from framebus.common import jpeg
from framebus.worker_node import RemoteCapture
from tests.support.media import frame_number
from tests.support.mjpeg_server import MjpegCamera, numbered_jpeg
from tests.support.processes import Processes
from tests.test_jpeg import bomb


def received_jpegs(control: str, count: int) -> list[bytes]:
    out = []
    with RemoteCapture(control, camera="ipcam", timeout=10) as cap:
        while len(out) < count:
            ok, data = cap.read_jpeg()
            assert ok and data is not None
            out.append(bytes(data))
    return out


@pytest.mark.parametrize("content_length", [True, False])
def test_the_cameras_own_jpeg_reaches_the_worker_unchanged(nodes: Processes, content_length: bool) -> None:
    camera = MjpegCamera(fps=15, content_length=content_length)
    try:
        capture, control = nodes.capture("--source", camera.url, "--camera-id", "ipcam", "--quality", "40")
        capture.wait_for(r"camera ipcam: streaming .* \(320x240 @")
        for data in received_jpegs(control, 5):
            number = frame_number(jpeg.decode_bgr(data))
            assert data == numbered_jpeg(number), "the node re-encoded the camera's JPEG"
    finally:
        camera.close()


def test_a_part_that_is_not_a_jpeg_makes_the_capture_reconnect(nodes: Processes) -> None:
    def part(index: int) -> bytes:
        return numbered_jpeg(index) if index % 20 != 10 else b"<html>not a picture</html>"

    camera = MjpegCamera(fps=30, part=part)
    try:
        capture, control = nodes.capture("--source", camera.url, "--camera-id", "ipcam")
        capture.wait_for(r"camera ipcam: MJPEG part is not a JPEG: not a JPEG: no start-of-image marker")
        capture.wait_for(r"camera ipcam: stream stopped delivering frames; reconnecting")
        assert len(received_jpegs(control, 3)) == 3  # and it streams again
        assert capture.proc.poll() is None
    finally:
        camera.close()


def test_a_part_declaring_too_many_pixels_is_never_published(nodes: Processes) -> None:
    big = bomb(16384, 6100)
    camera = MjpegCamera(fps=30, part=lambda index: big if index % 10 == 5 else numbered_jpeg(index))
    try:
        capture, control = nodes.capture("--source", camera.url, "--camera-id", "ipcam")
        capture.wait_for(r"camera ipcam: MJPEG part declares 16384x6100 pixels, more than 33,177,600")
        for data in received_jpegs(control, 10):
            assert jpeg.frame_size(data) == (320, 240)
    finally:
        camera.close()


def test_a_url_that_is_not_mjpeg_is_left_to_opencv(nodes: Processes) -> None:
    camera = MjpegCamera()
    try:
        with pytest.raises(NotMjpegError, match="404"):
            MjpegStream(camera.url.replace("stream.mjpg", "other"), 2.0, 2.0)
    finally:
        camera.close()


def test_resizing_an_mjpeg_camera_decodes_it(nodes: Processes) -> None:
    camera = MjpegCamera(fps=15)
    try:
        capture, control = nodes.capture("--source", camera.url, "--camera-id", "ipcam", "--width", "160")
        capture.wait_for(r"camera ipcam: streaming .* \(160x120 @")
        data = received_jpegs(control, 1)[0]
        assert jpeg.frame_size(data) == (160, 120)
        assert isinstance(jpeg.decode_bgr(data), np.ndarray)
    finally:
        camera.close()
