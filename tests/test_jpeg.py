"""JPEG payloads from the network are checked before decoding: a tiny file may declare a huge
picture (a decompression bomb), and a corrupt one must fail with JpegError, nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from framebus.common import jpeg


def bomb(width: int, height: int) -> bytes:
    """A valid 64x64 JPEG whose frame header (SOF0) claims width x height."""
    data = bytearray(jpeg.encode_bgr(np.zeros((64, 64, 3), np.uint8), 80))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("decode", [jpeg.decode_bgr, lambda data: jpeg.decode_reduced(data, 8)])
def test_a_decompression_bomb_is_refused_before_decoding(decode: object) -> None:
    assert jpeg.dimensions(bomb(60000, 60000)) == (60000, 60000)
    with pytest.raises(jpeg.JpegError, match="declares 60000x60000 pixels"):
        decode(bomb(60000, 60000))  # type: ignore[operator]


@pytest.mark.parametrize("payload", [b"", b"\xff\xd8\xff\xd9", b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9"])
def test_garbage_fails_with_jpeg_error(payload: bytes) -> None:
    with pytest.raises(jpeg.JpegError):
        jpeg.decode_bgr(payload)
    with pytest.raises(jpeg.JpegError):
        jpeg.decode_reduced(payload, 2)


def test_normal_frames_still_decode() -> None:
    image = np.full((720, 1280, 3), 128, np.uint8)
    data = jpeg.encode_bgr(image, 80)
    assert jpeg.decode_bgr(data).shape == (720, 1280, 3)
    assert jpeg.decode_reduced(data, 4).shape == (180, 320, 3)
