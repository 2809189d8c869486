"""The one source every sender reads: a natural-looking 1280x720 30 fps clip, made at the
start of each run (nothing binary is committed), and a reader paced at the clip's rate.

The scene is a slow pan over a street: sky with soft clouds, textured facades with windows,
trees, tarmac, cars and walkers crossing, and sensor noise that changes every frame. It JPEG-
encodes at quality 80 to ~100-150 KB like a real camera frame (a mostly flat test picture
would make every cost look small). H.264 (yuv420p, keyframe every 30 frames) through
/usr/bin/ffmpeg when it is there, like an IP camera's stream; MJPG through OpenCV otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 1280, 720, 30.0
QUALITY = 80
# OpenCV's FFmpeg capture with the parameters the capture node uses for files
# (capture_node/sources.py): its timeouts, and a one-thread decoder.
CAPTURE_PARAMS = [
    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
    5000,
    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
    5000,
    cv2.CAP_PROP_N_THREADS,
    1,
]


@dataclass(frozen=True)
class Clip:
    path: Path
    codec: str  # "h264" or "mjpg"
    frames: int
    width: int = WIDTH
    height: int = HEIGHT
    fps: float = FPS


def _fractal(rng: np.random.Generator, height: int, width: int, octaves: int = 6, decay: float = 0.55) -> np.ndarray:
    """Smooth-to-fine value noise in [0, 1] (sum of upsampled random grids)."""
    out = np.zeros((height, width), np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        grid = rng.random((max(2, cells * height // width), cells), dtype=np.float32)
        out += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= decay
    out /= total
    return np.clip((out - out.min()) / (np.ptp(out) + 1e-6), 0, 1)


def _street(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A wide still scene (width x height) that the camera pans across."""
    horizon = int(height * 0.38)
    street = int(height * 0.72)
    scene = np.zeros((height, width, 3), np.float32)
    # Sky: blue gradient with clouds.
    sky = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    scene[:horizon] = (235 - 60 * sky) * np.array([1.0, 0.85, 0.62], np.float32)
    clouds = _fractal(rng, horizon, width, 5)[..., None]
    scene[:horizon] = scene[:horizon] * (1 - 0.6 * clouds) + 245 * 0.6 * clouds
    # Facades: blocks of varied colour and height, brick-like texture, rows of windows.
    texture = _fractal(rng, height, width, 9, 0.8)[..., None] * 50 - 25
    bricks = np.zeros((height, width, 1), np.float32)
    bricks[::6] = -9  # mortar lines
    for row in range(0, height, 12):
        bricks[row : row + 6, (row // 6 % 2) * 9 :: 18] = -6
        bricks[row + 6 : row + 12, ((row // 6 + 1) % 2) * 9 :: 18] = -6
    texture += bricks
    x = 0
    while x < width:
        w = int(rng.integers(90, 260))
        top = int(rng.integers(int(height * 0.05), horizon + 40))
        colour = rng.integers(60, 200, 3).astype(np.float32)
        scene[top:street, x : x + w] = colour + texture[top:street, x : x + w]
        for wy in range(top + 15, street - 40, int(rng.integers(28, 44))):
            for wx in range(x + 10, x + w - 25, int(rng.integers(24, 40))):
                lit = rng.random() < 0.3
                shade = rng.integers(180, 250) if lit else rng.integers(20, 70)
                scene[wy : wy + 18, wx : wx + 14] = shade * np.array([0.8, 0.9, 1.0], np.float32)
        x += w + int(rng.integers(0, 12))
    # Trees: dark green blobs with leafy fine noise.
    leaves = np.clip(_fractal(rng, height, width, 9, 0.85) + rng.normal(0, 0.08, (height, width)), 0, 1)
    for _ in range(width // 120):
        cx, cy, r = int(rng.integers(0, width)), int(rng.integers(horizon, street)), int(rng.integers(30, 80))
        mask = np.zeros((height, width), np.uint8)
        cv2.circle(mask, (cx, cy - r // 2), r, 1, -1)
        cv2.rectangle(mask, (cx - 6, cy), (cx + 6, street), 1, -1)
        m = mask.astype(bool)
        scene[m] = np.stack([30 + 40 * leaves[m], 70 + 90 * leaves[m], 30 + 40 * leaves[m]], -1)
    # Tarmac and pavement.
    ground = _fractal(rng, height - street, width, 9, 0.8)[..., None]
    grit = rng.normal(0, 5, (height - street, width, 1))
    scene[street:] = 70 + 60 * ground + grit
    scene[street : street + 12] = 150 + 40 * ground[:12]
    for lx in range(0, width, 160):
        scene[int(height * 0.86) : int(height * 0.86) + 6, lx : lx + 80] = 220
    return np.clip(scene, 0, 255).astype(np.uint8)


def render_frames(frames: int, width: int = WIDTH, height: int = HEIGHT, seed: int = 7) -> Iterator[np.ndarray]:
    """The clip's frames: a pan at 2 px/frame with moving cars and walkers, fresh noise each frame."""
    rng = np.random.default_rng(seed)
    scene = _street(rng, width + 2 * frames + 8, height)
    noise = [rng.normal(0, 2.5, (height, width, 3)).astype(np.int16) for _ in range(7)]
    cars = [
        (int(rng.integers(0, width)), int(rng.integers(-9, 9)) or 5, tuple(int(c) for c in rng.integers(20, 230, 3)))
        for _ in range(5)
    ]
    walkers = [(int(rng.integers(0, width)), int(rng.choice([-2, -1, 1, 2]))) for _ in range(6)]
    base_y = int(height * 0.72)
    for i in range(frames):
        image = np.ascontiguousarray(scene[:, 2 * i : 2 * i + width])
        for n, (x0, speed, colour) in enumerate(cars):
            x = (x0 + speed * i) % (width + 300) - 150
            y = base_y + 40 + 45 * (n % 3)
            cv2.rectangle(image, (x, y), (x + 150, y + 45), colour, -1)
            cv2.rectangle(image, (x + 30, y - 25), (x + 115, y + 2), (40, 40, 45), -1)
            for wx in (x + 30, x + 120):
                cv2.circle(image, (wx, y + 45), 14, (15, 15, 15), -1)
        for x0, speed in walkers:
            x = (x0 + speed * i) % width
            cv2.ellipse(image, (x, base_y - 5), (9, 30), 0, 0, 360, (60, 50, 90), -1)
            cv2.circle(image, (x, base_y - 45), 9, (140, 170, 210), -1)
        yield np.clip(image.astype(np.int16) + noise[i % len(noise)], 0, 255).astype(np.uint8)


def make_clip(directory: Path, seconds: float = 10.0) -> Clip:
    """Write the clip into directory (H.264 via ffmpeg, else MJPG via OpenCV)."""
    directory.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * FPS)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        path = directory / "clip.mp4"
        command = [ffmpeg, "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24"]
        command += ["-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryfast"]
        command += ["-crf", "20", "-g", "30", "-pix_fmt", "yuv420p", "-an", str(path)]
        encoder = subprocess.Popen(command, stdin=subprocess.PIPE)
        assert encoder.stdin is not None
        for image in render_frames(frames):
            encoder.stdin.write(image.tobytes())
        encoder.stdin.close()
        if encoder.wait() != 0:
            raise RuntimeError(f"ffmpeg failed to write {path}")
        return Clip(path, "h264", frames)
    path = directory / "clip.avi"
    fourcc = cv2.VideoWriter_fourcc(*"MJPG")  # type: ignore[attr-defined]
    writer = cv2.VideoWriter(str(path), fourcc, FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MJPG video here")
    for image in render_frames(frames):
        writer.write(image)
    writer.release()
    return Clip(path, "mjpg", frames)


def open_capture(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, CAPTURE_PARAMS)
    if not cap.isOpened():
        raise RuntimeError(f"cannot open {path}")
    return cap


class PacedReader:
    """Reads the clip in a loop, paced at its fps, as a peer's sender loop would; the capture
    time is taken right after each read, as the capture node does."""

    def __init__(self, path: Path, paced: bool = True) -> None:
        self._cap = open_capture(path)
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or FPS)
        self._interval = 1.0 / fps if paced else 0.0
        self._next = time.monotonic()

    def read(self) -> tuple[np.ndarray, int]:
        if self._interval:
            delay = self._next - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing at 30 fps, not synchronisation
            self._next = max(self._next + self._interval, time.monotonic() - self._interval)
        ok, image = self._cap.read()
        if not ok:  # end of the clip: loop, as capture-node --loop does
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
            if not ok:
                raise RuntimeError("the clip does not read after a rewind")
        return image, time.time_ns()

    def close(self) -> None:
        self._cap.release()
