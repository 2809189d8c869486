"""Process the newest frames of a framebus camera with your own function, and republish.

    python docs/examples/process_frames.py tcp://127.0.0.1:5555 cam1
    worker-node web --node tcp://127.0.0.1:5555 --node tcp://127.0.0.1:5585   # see cam1/edges

The function gets the newest decoded BGR frame and its header; what it returns is published by
this process as the stream `cam1/edges` (describe endpoint tcp://127.0.0.1:5585), where any
worker (save, display, web, another process worker, on any machine) can read it like a camera.
Ctrl-C stops it.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from framebus import FrameHeader, processing


def edges(image: np.ndarray, header: FrameHeader) -> tuple[np.ndarray, dict[str, float]]:
    """An output frame (Canny edges drawn in white) and results (published as metadata)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    found = cv2.Canny(grey, 80, 160)
    image[found > 0] = (255, 255, 255)
    return image, {"edge_fraction": round(float(np.count_nonzero(found)) / found.size, 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("node", help="capture node describe endpoint, e.g. tcp://edge1:5555")
    parser.add_argument("camera", help="camera id, e.g. cam1")
    parser.add_argument("--control", default="tcp://127.0.0.1:5585", help="this worker's describe endpoint")
    args = parser.parse_args()
    processing.run(edges, node=args.node, camera=args.camera, control=args.control, suffix="edges")


if __name__ == "__main__":
    main()
