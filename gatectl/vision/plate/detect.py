"""HyperLPR3 "y5fu" plate detector (Apache-2.0): boxes, 4 corners, single/double layer.

Pre/post-processing as measured in models/MANIFEST.md §5: RGB /255, letterbox centred with
pad 0; output rows ``cx, cy, w, h, obj, 4 corners (x, y), p_single, p_double`` in input pixels;
score = obj * max(p_single, p_double); NMS; undo the letterbox.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gatectl.vision.letterbox import letterbox
from gatectl.vision.models import ModelStore


@dataclass(frozen=True)
class PlateBox:
    box: np.ndarray  # x1, y1, x2, y2 in frame pixels
    corners: np.ndarray  # (4, 2): TL, TR, BR, BL in frame pixels
    score: float
    double: bool  # two-row plate (yellow trucks, motorcycles)


class PlateDetector:
    def __init__(
        self,
        models: ModelStore,
        size: int = 320,
        score_threshold: float = 0.5,
        nms_iou: float = 0.5,
    ):
        self.session = models.session("plate_det_320" if size == 320 else "plate_det_640")
        self.input_name = self.session.get_inputs()[0].name
        self.size = size
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou

    def detect(self, image: np.ndarray) -> list[PlateBox]:
        canvas, r, (left, top) = letterbox(image, self.size)
        blob = cv2.dnn.blobFromImage(canvas, 1 / 255.0, swapRB=True)
        out = self.session.run(None, {self.input_name: blob})[0][0]
        scores = out[:, 4] * out[:, 13:15].max(1)
        keep = scores >= self.score_threshold
        if not keep.any():
            return []
        out, scores = out[keep], scores[keep]
        boxes = np.stack([out[:, 0] - out[:, 2] / 2, out[:, 1] - out[:, 3] / 2,
                          out[:, 0] + out[:, 2] / 2, out[:, 1] + out[:, 3] / 2], 1)
        xywh = np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]
        idx = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.score_threshold, self.nms_iou)
        pad = np.array([left, top], np.float32)
        found = []
        for i in np.asarray(idx).reshape(-1):
            corners = (out[i, 5:13].reshape(4, 2) - pad) / r
            box = (boxes[i].reshape(2, 2) - pad).reshape(4) / r
            found.append(PlateBox(box.astype(np.float32), order_corners(corners).astype(np.float32),
                                  float(scores[i]), bool(out[i, 14] > out[i, 13])))
        return sorted(found, key=lambda p: -p.score)


def order_corners(pts: np.ndarray) -> np.ndarray:
    """TL, TR, BR, BL by the sum/difference of coordinates, whatever order the model gave."""
    s, d = pts.sum(1), np.diff(pts, axis=1).reshape(-1)
    return np.array([pts[s.argmin()], pts[d.argmin()], pts[s.argmax()], pts[d.argmax()]])
