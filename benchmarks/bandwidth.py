"""`make bench-bandwidth`: what a camera's stream costs on the link, by JPEG quality, picture
size and publish rate, so that links can be sized.

    python -m benchmarks.bandwidth [--frames 60] [--out bench-results]

The frames are the benchmark clip's street scene (benchmarks/source_clip.py: pan, cars,
walkers, textures, sensor noise), rendered at each size, encoded by the capture node's own
encoder (common.jpeg: libjpeg-turbo, 4:2:0) and framed as the node frames them
(common.protocol.encode_frame). Mbit/s = mean message size x fps x 8: ZeroMQ and TCP add a few
dozen bytes per ~100 KB message on top. The encode time is CPU per frame on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks.processes import REPO
from benchmarks.source_clip import render_frames
from framebus.common import jpeg
from framebus.common.protocol import FrameHeader, encode_frame

SIZES = ((640, 360), (1280, 720), (1920, 1080))
QUALITIES = (50, 70, 80, 90)
RATES = (5, 10, 15, 30)


def measure(frames: int) -> list[dict[str, float]]:
    rows = []
    for width, height in SIZES:
        images = list(render_frames(frames, width, height))
        for quality in QUALITIES:
            sizes, cpu = [], 0.0
            for seq, image in enumerate(images):
                started = time.process_time()
                data = jpeg.encode_bgr(image, quality)
                cpu += time.process_time() - started
                header = FrameHeader("cam1", seq, time.time_ns(), time.time_ns(), width, height)
                sizes.append(len(encode_frame(header, data)))
            mean = statistics.fmean(sizes)
            row = {"width": width, "height": height, "quality": quality, "kb_per_frame": round(mean / 1000, 1)}
            row["encode_ms"] = round(1000 * cpu / len(images), 2)
            row.update({f"mbit_s_at_{fps}": round(mean * fps * 8 / 1e6, 1) for fps in RATES})
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, float]]) -> str:
    out = [
        "| size | quality | KB per frame | encode (ms) | " + " | ".join(f"{fps} fps" for fps in RATES) + " |",
        "|---|---|---|---|" + "---|" * len(RATES),
    ]
    for r in rows:
        rates = " | ".join(f"{r[f'mbit_s_at_{fps}']}" for fps in RATES)
        out.append(
            f"| {r['width']}×{r['height']} | {r['quality']} | {r['kb_per_frame']} | {r['encode_ms']} | {rates} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="benchmarks.bandwidth", description=__doc__)
    p.add_argument("--frames", type=int, default=60, help="frames per size (2 s of the clip)")
    p.add_argument("--out", type=Path, default=REPO / "bench-results")
    args = p.parse_args(argv)
    rows = measure(args.frames)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bandwidth.json").write_text(json.dumps(rows, indent=2))
    (args.out / "bandwidth.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
