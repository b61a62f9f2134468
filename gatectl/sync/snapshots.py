"""What an uploaded snapshot shows: every face but the subject's blurred (`[sync] blur_others`).

The stored snapshot stays as it was taken (the device's own audit); only the copy that leaves
for the centre is changed. On a face gate's event the subject is the largest face - the person
at the door, whom the gate decided about; on any other event (a plate lane, an alert) no face
is the subject and every face is blurred. A snapshot that cannot be decoded is not uploaded.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from gatectl.store.recorder import encode_jpeg

Boxes = Callable[[np.ndarray], list[np.ndarray]]  # image -> face boxes (x1, y1, x2, y2)
MARGIN = 0.25  # of a face box's size added on each side: hair and ears identify too
BLOCKS = 4  # a blurred face keeps 4 x 4 averaged colours


def blur_faces(image: np.ndarray, boxes: list[np.ndarray], keep: int | None) -> np.ndarray:
    """``image`` with every box but ``boxes[keep]`` blurred beyond recognition."""
    out = image.copy()
    h, w = out.shape[:2]
    for i, b in enumerate(boxes):
        if i == keep:
            continue
        x1, y1, x2, y2 = (float(v) for v in b[:4])
        mx, my = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
        xa, ya = max(0, int(x1 - mx)), max(0, int(y1 - my))
        xb, yb = min(w, int(x2 + mx) + 1), min(h, int(y2 + my) + 1)
        if xb - xa < 2 or yb - ya < 2:
            continue
        region = out[ya:yb, xa:xb]
        # down to a few blocks, then smoothed: no face detector (or person) finds a face in
        # it, and unlike a plain blur nothing of the detail is left to sharpen back
        small = cv2.resize(region, (BLOCKS, BLOCKS), interpolation=cv2.INTER_AREA)
        coarse = cv2.resize(small, (xb - xa, yb - ya), interpolation=cv2.INTER_LINEAR)
        k = max(3, ((xb - xa) // 3) | 1)
        out[ya:yb, xa:xb] = cv2.GaussianBlur(coarse, (k, k), 0)
    return out


class SnapshotBlur:
    """The sync client's upload filter: JPEG in, JPEG with the bystanders' faces blurred out."""

    def __init__(self, boxes: Boxes, face_gates: set[str], jpeg_quality: int = 85):
        self.boxes = boxes
        self.face_gates = face_gates
        self.jpeg_quality = jpeg_quality

    def __call__(self, gate: str, jpeg: bytes) -> bytes | None:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return None
        boxes = self.boxes(image)
        if not boxes:
            return jpeg
        keep = None
        if gate in self.face_gates:
            areas = [float((b[2] - b[0]) * (b[3] - b[1])) for b in boxes]
            keep = int(np.argmax(areas))
        return encode_jpeg(blur_faces(image, boxes, keep), self.jpeg_quality)
