"""The example handlers: motion (frame differencing) and faces (OpenCV's Haar cascade)."""

from __future__ import annotations

import cv2
import numpy as np

from framebus.common.protocol import FrameHeader
from framebus.worker_node.handlers import faces, motion
from framebus.worker_node.handlers.haar import HaarCascade, group_rectangles
from tests.support.pictures import MESSI, MESSI_FACE

HEADER = FrameHeader("cam1", 0, 1, 2, 640, 360)


def scene(square_x: int) -> np.ndarray:
    image = np.full((360, 640, 3), 90, np.uint8)
    image[150:210, square_x : square_x + 60] = 230
    return image


def test_motion_boxes_what_moved_in_green() -> None:
    detector = motion.MotionDetector()
    _, first = detector(scene(100), HEADER)
    assert first == {"motion": False, "boxes": [], "changed": 0.0}
    _, still = detector(scene(100), HEADER)
    assert still["motion"] is False
    annotated, moved = detector(scene(160), HEADER)
    assert moved["motion"] is True and len(moved["boxes"]) == 1
    x, y, w, h = moved["boxes"][0]
    assert x <= 100 and x + w >= 220 and y <= 150 and y + h >= 210  # old and new position, one region
    assert x >= 70 and x + w <= 250
    assert tuple(annotated[y, x + w // 2]) == motion.BOX_COLOUR


def test_face_is_found_on_a_real_photo() -> None:
    image = cv2.imread(str(MESSI))
    assert image is not None, f"{MESSI} is missing: run deploy/install-test-deps.sh"
    detector = faces.FaceDetector()
    annotated, results = detector(image.copy(), HEADER)
    assert results["faces"] == len(results["boxes"]) >= 1
    fx, fy, fw, fh = MESSI_FACE
    centre = (fx + fw / 2, fy + fh / 2)
    hits = [b for b in results["boxes"] if b[0] <= centre[0] <= b[0] + b[2] and b[1] <= centre[1] <= b[1] + b[3]]
    assert hits and 25 <= hits[0][2] <= 60, results["boxes"]
    x, y, w, _ = hits[0]
    assert tuple(annotated[y, x + w // 2]) == faces.BOX_COLOUR


def test_no_face_in_a_plain_picture() -> None:
    _, results = faces.FaceDetector()(scene(200), HEADER)
    assert results == {"faces": 0, "boxes": []}


def test_cascade_file_ships_with_the_package() -> None:
    cascade = HaarCascade(faces.CASCADE)
    assert cascade.window == (24, 24)


def test_grouping_keeps_clusters_with_enough_neighbours() -> None:
    cluster = [(100, 100, 40, 40), (102, 101, 40, 40), (99, 98, 42, 42), (101, 100, 40, 41)]
    lone = [(300, 300, 40, 40)]
    assert group_rectangles(cluster + lone, min_neighbors=3) == [(100, 100, 40, 41)]
    assert group_rectangles(cluster + lone, min_neighbors=4) == []
