"""Sources: width/height resize real cameras too (they were silently ignored for them), before
the encoder, and keep the aspect ratio when one is given alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from framebus.capture_node import config
from framebus.capture_node.config import CameraConfig, ConfigError
from framebus.capture_node.sources import ResizedSource, SourceError, open_source, output_size
from framebus.common import jpeg
from framebus.worker_node import RemoteCapture
from tests.support.media import frame_number, write_numbered_video
from tests.support.mjpeg_server import MjpegCamera
from tests.support.processes import Processes


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (0, 0, (1920, 1080)),
        (640, 360, (640, 360)),
        (640, 0, (640, 360)),
        (0, 360, (640, 360)),
        (100, 0, (100, 56)),  # even, as encoders like
        (640, 480, (640, 480)),  # both given: as given, aspect ratio or not
    ],
)
def test_output_size(width: int, height: int, expected: tuple[int, int]) -> None:
    assert output_size(CameraConfig(id="c", width=width, height=height), 1920, 1080) == expected


def test_a_video_file_is_resized_before_it_is_encoded(tmp_path: Path) -> None:
    video = write_numbered_video(tmp_path / "clip.avi", 5)  # 320x240
    source = open_source(CameraConfig(id="c", source=str(video), width=160))
    try:
        assert isinstance(source, ResizedSource)
        assert (source.info.width, source.info.height) == (160, 120)
        image = source.read()
        assert image is not None and image.shape == (120, 160, 3)
    finally:
        source.close()


def test_without_a_size_the_source_is_left_alone(tmp_path: Path) -> None:
    video = write_numbered_video(tmp_path / "clip.avi", 5)
    source = open_source(CameraConfig(id="c", source=str(video)))
    try:
        assert not isinstance(source, ResizedSource)
        image = source.read()
        assert image is not None and image.shape == (240, 320, 3)
    finally:
        source.close()


def test_an_ip_camera_is_published_at_the_size_asked_for(nodes: Processes) -> None:
    camera = MjpegCamera(fps=15)  # 320x240
    try:
        capture, control = nodes.capture("--source", camera.url, "--camera-id", "ipcam", "--height", "120")
        capture.wait_for(r"camera ipcam: streaming .* \(160x120 @")
        with RemoteCapture(control, camera="ipcam", timeout=10) as cap:
            ok, frame = cap.read()
            assert ok and isinstance(frame, np.ndarray) and frame.shape == (120, 160, 3)
            jpeg_ok, data = cap.read_jpeg()
            assert jpeg_ok and data is not None and jpeg.dimensions(data) == (160, 120)
    finally:
        camera.close()


def test_resized_frames_keep_their_picture(tmp_path: Path) -> None:
    video = write_numbered_video(tmp_path / "clip.avi", 5)
    source = open_source(CameraConfig(id="c", source=str(video), width=640, height=480))  # up, 2x
    try:
        numbers = []
        while (image := source.read()) is not None:
            assert image.shape == (480, 640, 3)
            numbers.append(frame_number(image[::2, ::2]))
        assert numbers == [0, 1, 2, 3, 4]
    finally:
        source.close()


def test_hw_decode_any_falls_back_to_the_cpu(tmp_path: Path) -> None:
    """No hardware decoder here: 'any' decodes on the CPU (a box with one would use it)."""
    video = write_numbered_video(tmp_path / "clip.avi", 5)
    source = open_source(CameraConfig(id="c", source=str(video), hw_decode="any"))
    try:
        image = source.read()
        assert isinstance(image, np.ndarray) and frame_number(image) == 0
    finally:
        source.close()


def test_hw_decode_of_a_kind_the_box_lacks_says_what_to_try(tmp_path: Path) -> None:
    video = write_numbered_video(tmp_path / "clip.avi", 5)
    try:
        source = open_source(CameraConfig(id="c", source=str(video), hw_decode="vaapi"))
    except SourceError as exc:  # this machine: no VAAPI device
        assert "with hw_decode = 'vaapi': try 'any', which falls back to the CPU" in str(exc)
    else:  # a box with VAAPI decodes there
        source.close()


def test_hw_decode_names_are_checked() -> None:
    with pytest.raises(
        ConfigError, match=r"camera\[0\].hw_decode: must be one of none, any, vaapi, drm, d3d11, mfx, got 'cuda'"
    ):
        config.from_dict({"camera": [{"id": "c", "hw_decode": "cuda"}]}, "x.toml")
