"""JPEG encode/decode with libjpeg-turbo (simplejpeg): cv2.imdecode is ~2.5x slower here."""

from __future__ import annotations

import cv2
import numpy as np
import simplejpeg

_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


MAX_DECODE_PIXELS = 7680 * 4320  # 8K UHD, 100 MB as BGR: the most any decode here may cost unless told more
# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic):
# not C4 (DHT), C8 (reserved) or CC (DAC).
_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_NO_LENGTH = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM, RSTn: markers without a segment


class JpegError(ValueError):
    """A payload that claimed to be a JPEG but does not decode."""


class JpegTooLargeError(JpegError):
    """A JPEG whose own frame header declares more pixels than the caller decodes."""

    def __init__(self, width: int, height: int, limit: int) -> None:
        super().__init__(f"JPEG declares {width}x{height} pixels, more than the {limit:,} allowed")
        self.width, self.height, self.limit = width, height, limit


def _check_size(jpeg: bytes | memoryview, max_pixels: int) -> None:
    """A 629-byte JPEG may declare 16384x6100 pixels (0.8 s and 284 MB to decode): read its
    own frame header before decoding."""
    width, height = frame_size(jpeg)
    if width * height > max_pixels:
        raise JpegTooLargeError(width, height, max_pixels)


def frame_size(jpeg: bytes | memoryview) -> tuple[int, int]:
    """(width, height) from the JPEG's start-of-frame marker, walking its segments (no decoder
    involved, nothing allocated); JpegError if there is none before the scan."""
    data = memoryview(jpeg).cast("B") if isinstance(jpeg, memoryview) else memoryview(jpeg)
    if data[:2] != b"\xff\xd8":
        raise JpegError("not a JPEG: no start-of-image marker")
    i, end = 2, len(data)
    while i + 4 <= end:
        if data[i] != 0xFF:
            raise JpegError(f"JPEG segments are corrupt at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _NO_LENGTH:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header came first
            break
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2 or i + 2 + length > end:
            raise JpegError(f"JPEG segment at byte {i} runs past the end")
        if marker in _SOF:
            if length < 7:
                raise JpegError("JPEG frame header is too short")
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            if not width or not height:
                raise JpegError(f"JPEG frame header declares {width}x{height} pixels")
            return width, height
        i += 2 + length
    raise JpegError("JPEG has no frame header before its image data")


def encode_bgr(image: np.ndarray, quality: int) -> bytes:
    """Encode a BGR (or grey) frame with 4:2:0 subsampling (simplejpeg defaults to 4:4:4)."""
    if not image.flags.c_contiguous:
        image = np.ascontiguousarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
        return simplejpeg.encode_jpeg(image, quality=quality, colorspace="GRAY", colorsubsampling="Gray")
    return simplejpeg.encode_jpeg(image, quality=quality, colorspace="BGR", colorsubsampling="420")


def decode_bgr(jpeg: bytes | memoryview, max_pixels: int = MAX_DECODE_PIXELS) -> np.ndarray:
    """JpegTooLargeError for a picture above max_pixels, JpegError for anything that does not decode."""
    _check_size(jpeg, max_pixels)
    try:
        return simplejpeg.decode_jpeg(jpeg, colorspace="BGR")
    except Exception as exc:  # simplejpeg raises ValueError/RuntimeError for corrupt data
        raise JpegError(f"JPEG does not decode: {exc}") from None


def decode_reduced(jpeg: bytes | memoryview, factor: int, max_pixels: int = MAX_DECODE_PIXELS) -> np.ndarray:
    """Decode at 1/factor size with DCT scaling: ~3x cheaper than decode + resize (but every
    block is still read: the limit is on the full picture)."""
    flag = _REDUCED.get(factor)
    if flag is None:
        raise ValueError(f"reduction factor must be one of {sorted(_REDUCED)}, got {factor}")
    _check_size(jpeg, max_pixels)
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), flag)
    if image is None:
        raise JpegError("JPEG does not decode")
    return image


def dimensions(jpeg: bytes | memoryview) -> tuple[int, int]:
    """(width, height) of the JPEG (its frame header), without decoding pixels."""
    return frame_size(jpeg)
