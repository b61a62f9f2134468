"""YOLOX-family object detector (ONNX), for the elevator e-bike gate.

Pluggable: any YOLOX export with the standard head (``[1, A, 5 + C]`` rows ``x, y, w, h, obj,
class probs`` over strides 8/16/32, input BGR 0..255 letterboxed top-left with pad 114) works,
with its class map in the config - so a site can drop in a model trained on its own cars.
Optionally the image is also cut into a grid of overlapping tiles (2x2 of 60% of each side, 3x3
of 45%, 4x4 of 35%): in a top-down wide-angle car a two-wheeler is small and distorted, and the
tiles give the model more pixels, at one model run per tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

TILE_FRACTION = {2: 0.6, 3: 0.45, 4: 0.35}  # grid -> tile side as a fraction of the image
NMS_IOU = 0.45


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # x1, y1, x2, y2 in image pixels
    score: float
    label: str


class YoloxDetector:
    def __init__(self, session, input_size: int, classes: dict[str, int], threshold: float, tiles: int = 2):
        """``tiles``: 1 = the whole image only; 2, 3, 4 = also a 2x2, 3x3 or 4x4 grid of tiles."""
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.size = input_size
        self.classes = classes
        self.threshold = threshold
        self.tiles = tiles
        grids, strides = [], []
        for stride in (8, 16, 32):
            n = input_size // stride
            yv, xv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            grids.append(np.stack([xv, yv], -1).reshape(-1, 2))
            strides.append(np.full((n * n, 1), stride))
        self._grid = np.concatenate(grids).astype(np.float32)
        self._stride = np.concatenate(strides).astype(np.float32)

    def _run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        r = min(self.size / h, self.size / w)
        nw, nh = max(1, int(w * r)), max(1, int(h * r))
        canvas = np.full((self.size, self.size, 3), 114, np.uint8)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        out = self.session.run(None, {self.input_name: canvas.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
        idx = np.array(list(self.classes.values()))
        scores = out[:, 4:5] * out[:, 5 + idx]
        best = scores.max(1)
        keep = best >= self.threshold
        out, scores = out[keep], scores[keep]
        xy = (out[:, :2] + self._grid[keep]) * self._stride[keep]
        wh = np.exp(out[:, 2:4]) * self._stride[keep]
        boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1) / r
        return boxes, scores.max(1), scores.argmax(1)

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        views = [(0, 0, w, h)]
        if self.tiles > 1:
            frac = TILE_FRACTION[self.tiles]
            tw, th = int(w * frac), int(h * frac)
            xs = np.linspace(0, w - tw, self.tiles).astype(int)
            ys = np.linspace(0, h - th, self.tiles).astype(int)
            views += [(x, y, x + tw, y + th) for x in xs for y in ys]
        boxes, scores, labels = [], [], []
        for x0, y0, x1, y1 in views:
            b, s, k = self._run(image[y0:y1, x0:x1])
            boxes.append(b + np.array([x0, y0, x0, y0], np.float32))
            scores.append(s)
            labels.append(k)
        b, s, k = np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)
        if len(s) == 0:
            return []
        names = list(self.classes)
        keep = cv2.dnn.NMSBoxesBatched(np.c_[b[:, :2], b[:, 2:] - b[:, :2]].tolist(), s.tolist(), k.tolist(),
                                       self.threshold, NMS_IOU)
        return sorted((Detection(b[i].astype(np.float32), float(s[i]), names[int(k[i])])
                       for i in np.asarray(keep).reshape(-1)), key=lambda d: -d.score)
