"""Silent-Face anti-spoofing: MiniFASNetV2 (crop scale 2.7) + MiniFASNetV1SE (crop scale 4.0).

Fused as the authors do: the two softmax outputs are summed and p(real) = sum[class 1] / 2.
Both models see a context crop around the face (the bezel of a phone, the edge of a print),
which is why each needs its own scaled box rather than the tight face crop.
"""

from __future__ import annotations

import cv2
import numpy as np

from gatectl.vision.models import ModelStore

REAL_CLASS = 1
MODELS = (("minifasnet_v2", 2.7), ("minifasnet_v1se", 4.0))


def context_box(box: np.ndarray, frame_hw: tuple[int, int], scale: float) -> tuple[int, int, int, int]:
    """The official CropImage._get_new_box: scale the box about its centre (shrinking the scale
    when it cannot fit) and shift it back inside the frame. Returns integer x1, y1, x2, y2."""
    h, w = frame_hw
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    scale = min((h - 1) / bh, (w - 1) / bw, scale)
    nw, nh = bw * scale, bh * scale
    cx, cy = x1 + bw / 2, y1 + bh / 2
    left, top, right, bottom = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if left < 0:
        right -= left
        left = 0
    if top < 0:
        bottom -= top
        top = 0
    if right > w - 1:
        left -= right - w + 1
        right = w - 1
    if bottom > h - 1:
        top -= bottom - h + 1
        bottom = h - 1
    return int(left), int(top), int(right), int(bottom)


class LivenessModel:
    def __init__(self, models: ModelStore):
        self.sessions = []
        for name, scale in MODELS:
            s = models.session(name)
            self.sessions.append((s, s.get_inputs()[0].name, scale))

    def crops(self, image: np.ndarray, box: np.ndarray) -> list[np.ndarray]:
        """One 1x3x80x80 float32 BGR 0..255 blob per model (the official to_tensor skips /255)."""
        blobs = []
        for _, _, scale in self.sessions:
            x1, y1, x2, y2 = context_box(box, image.shape[:2], scale)
            patch = cv2.resize(image[y1:y2 + 1, x1:x2 + 1], (80, 80), interpolation=cv2.INTER_LINEAR)
            blobs.append(cv2.dnn.blobFromImage(patch))
        return blobs

    def infer(self, blobs: list[np.ndarray]) -> float:
        total = np.zeros(3, np.float64)
        for (session, name, _), blob in zip(self.sessions, blobs):
            logits = session.run(None, {name: blob})[0][0].astype(np.float64)
            e = np.exp(logits - logits.max())
            total += e / e.sum()
        return float(total[REAL_CLASS] / len(self.sessions))

    def p_real(self, image: np.ndarray, box: np.ndarray) -> float:
        return self.infer(self.crops(image, box))
