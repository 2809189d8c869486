"""Workers that decode refuse a picture larger than allowed before decoding it: a 629-byte JPEG
declaring 16384x6100 pixels cost a process worker 0.8 s and 284 MB each. The size is read from
the JPEG's own frame header; the limit follows the camera's described size (with a margin)
unless --max-pixels / max_pixels says otherwise. Real process workers and RemoteCapture against
a node (tests/support/fake_node.py) that sends such bombs between valid frames."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from framebus.common import jpeg
from framebus.common.protocol import FrameHeader, encode_frame
from framebus.worker_node import RemoteCapture
from framebus.worker_node.pixel_limit import FALLBACK_PIXELS, PixelLimit, parse_max_pixels
from tests.support.fake_node import FakeNode
from tests.support.processes import Processes, hold
from tests.test_jpeg import bomb

CAMERA = "bombed"
WIDTH, HEIGHT = 320, 240
VALID = jpeg.encode_bgr(np.full((HEIGHT, WIDTH, 3), 90, np.uint8), 80)
BOMB = bomb(16384, 6100)


def bomb_or_valid(seq: int) -> bytes:
    """Ten bombs a second (every other message at 20 per second) between valid frames."""
    now = time.time_ns()
    if seq % 2:  # the message header claims a small picture; the JPEG's own header does not
        return encode_frame(FrameHeader(CAMERA, seq, now, now, WIDTH, HEIGHT), BOMB)
    return encode_frame(FrameHeader(CAMERA, seq, now, now, WIDTH, HEIGHT), VALID)


@pytest.fixture
def bomb_node() -> Iterator[FakeNode]:
    node = FakeNode(CAMERA, WIDTH, HEIGHT, bomb_or_valid, interval=0.05)
    try:
        yield node
    finally:
        node.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(pid)


def test_the_bomb_is_what_it_claims() -> None:
    assert len(BOMB) < 700 and jpeg.frame_size(BOMB) == (16384, 6100)


@pytest.mark.parametrize("explicit", [None, "1M"])
def test_a_process_worker_refuses_pictures_above_the_limit_before_decoding(
    nodes: Processes, bomb_node: FakeNode, explicit: str | None
) -> None:
    worker = nodes.worker(
        "process", "--node", bomb_node.endpoint, "--camera", CAMERA, "--control", "tcp://127.0.0.1:*",
        "--handler", "framebus.worker_node.handlers.motion:MotionDetector", *(["--max-pixels", explicit] if explicit else []),
    )  # fmt: skip
    worker.wait_for(rf"camera {CAMERA}: frame \d+ results", 30)  # valid frames are handled
    line = worker.wait_for(rf"camera {CAMERA}: refused a JPEG of 16384x6100 pixels, more than the ([\d,]+) allowed", 10)
    limit = int(line.group(1).replace(",", ""))
    assert limit == (1_000_000 if explicit else int(WIDTH * HEIGHT * 2.0))
    cpu_before, start = cpu_seconds(worker.proc.pid), time.monotonic()
    hold(10)  # ten bombs a second: each one decoded cost 0.8 s of CPU
    cpu_share = (cpu_seconds(worker.proc.pid) - cpu_before) / (time.monotonic() - start)
    rss = rss_mib(worker.proc.pid)
    first = next(i for i, text in enumerate(worker.lines) if "refused a JPEG" in text)
    again = worker.wait_for(r"refused a JPEG .*; (\d+) refused so far", 15, start=first + 1)  # 10 s later
    refusals = [text for text in worker.lines if "refused a JPEG" in text]
    assert len(refusals) <= 3 and int(again.group(1)) >= 50, refusals  # rate-limited, all counted
    assert cpu_share < 0.4, f"the worker used {cpu_share:.0%} of a core"
    assert rss < 250, f"RSS {rss:.0f} MiB"
    assert worker.proc.poll() is None and "Traceback" not in worker.output
    assert worker.stop() < 3.0
    print(f"\nprocess worker under 10 bombs/s: {cpu_share:.0%} of a core, RSS {rss:.0f} MiB, {again.group(1)} refused")


@pytest.mark.parametrize(("max_pixels", "valid_ok"), [(None, True), (1_000_000, True), (100 * 100, False)])
def test_remote_capture_refuses_them_and_reads_the_next_frame(
    bomb_node: FakeNode, max_pixels: int | None, valid_ok: bool
) -> None:
    with RemoteCapture(bomb_node.endpoint, camera=CAMERA, timeout=5, max_pixels=max_pixels) as cap:
        assert cap.isOpened(), cap.error
        results = [cap.read() for _ in range(20)]  # each read waits for a newer frame: bombs and valid ones
    shapes = [image.shape for ok, image in results if ok and image is not None]
    assert len(shapes) < 20, "no bomb was refused"
    if valid_ok:
        assert shapes and set(shapes) == {(HEIGHT, WIDTH, 3)}
    else:
        assert not shapes, "320x240 frames are above a 10,000-pixel limit"


def test_limits() -> None:
    from framebus.common.protocol import CameraInfo

    described = CameraInfo(CAMERA, "tcp://x:1", 1920, 1080, 30.0, "streaming", "latest")
    unknown = CameraInfo(CAMERA, "tcp://x:1", 0, 0, 0.0, "connecting", "latest")
    huge = CameraInfo(CAMERA, "tcp://x:1", 16384, 16384, 30.0, "streaming", "latest")
    assert PixelLimit().for_camera(described) == 1920 * 1080 * 2
    assert PixelLimit().for_camera(unknown) == PixelLimit().for_camera(None) == FALLBACK_PIXELS
    assert PixelLimit().for_camera(huge) == jpeg.MAX_DECODE_PIXELS  # a node's word is not enough past 8K
    assert PixelLimit(50_000_000).for_camera(huge) == 50_000_000
    assert parse_max_pixels("8M") == 8_000_000 and parse_max_pixels("3840x2160") == 3840 * 2160
    for wrong in ("lots", "-5", "10", "0x0"):
        with pytest.raises(ValueError):
            parse_max_pixels(wrong)
