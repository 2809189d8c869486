"""Read the newest frames of a remote framebus camera the way you would read cv2.VideoCapture.

    python docs/examples/read_remote_camera.py tcp://127.0.0.1:5555 cam1 --frames 30
    python docs/examples/read_remote_camera.py tcp://edge1:5555 cam1 \
        --key ~/.framebus/viewer.key_secret --server-key edge1.key    # a node with CURVE keys

The only framebus line is the RemoteCapture one: before it was cv2.VideoCapture(url).
"""

from __future__ import annotations

import argparse

import cv2

from framebus import RemoteCapture


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("node", help="capture node describe endpoint, e.g. tcp://edge1:5555")
    parser.add_argument("camera", help="camera id, e.g. cam1")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--key", help="this script's CURVE secret key file")
    parser.add_argument("--server-key", help="the node's public key file")
    args = parser.parse_args()

    # was: cap = cv2.VideoCapture(url)
    cap = RemoteCapture(args.node, camera=args.camera, key=args.key, server_key=args.server_key)
    if not cap.isOpened():
        raise SystemExit(f"cannot open: {cap.error}")
    for _ in range(args.frames):
        ok, frame = cap.read()  # the newest frame; never a backlog
        if not ok:
            break
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        size = f"{frame.shape[1]}x{frame.shape[0]}"
        print(f"frame {cap.last.seq}: {size}, mean {grey.mean():.0f}, age {cap.age * 1000:.0f} ms")
    cap.release()


if __name__ == "__main__":
    main()
