"""YuNet face detector (libfacedetection, Apache-2.0) run through onnxruntime.

Decoding follows OpenCV's FaceDetectorYN (see models/MANIFEST.md §1) but is vectorised: only the
anchors above the score threshold are decoded, so post-processing stays far below the model time.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gatectl.vision.models import ModelStore

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class Face:
    """One detected face in frame pixels. ``landmarks`` is (5, 2): eyes (image left, right),
    nose tip, mouth corners (image left, right) - the order of the ArcFace template."""

    box: np.ndarray  # x1, y1, x2, y2 float32
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


@dataclass(frozen=True)
class FrameFaces:
    """The faces one detector run found in one frame, kept for another consumer of the same
    frame (the tailgate watch on a face gate's camera) so that YuNet runs once per frame: found
    down to ``floor``, at ``scale``, with ``nms_iou`` (`FaceDetector.reuse` checks them)."""

    image: np.ndarray  # the frame itself (compared by identity: never a copy)
    faces: tuple[Face, ...]
    floor: float
    scale: float
    nms_iou: float


class FaceDetector:
    def __init__(self, models: ModelStore, long_side: int = 640, score_threshold: float = 0.8,
                 nms_iou: float = 0.3, share_from: float | None = None):
        """``share_from``: also keep the last frame's faces down to this score (`shared`) for
        another consumer of that frame with a lower threshold than this one's (None: keep
        none)."""
        self.session = models.session("yunet_n")
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.long_side = long_side
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.share_from = share_from
        self.shared: FrameFaces | None = None
        self._grids: dict[tuple[int, int], list[np.ndarray]] = {}

    def scale_for(self, image: np.ndarray) -> float:
        """The input scale `prepare` applies to ``image`` (never up)."""
        h, w = image.shape[:2]
        return min(1.0, self.long_side / max(h, w))

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Resize so the long side is ``long_side``, pad bottom/right to multiples of 32, to NCHW
        float32 BGR 0..255 (YuNet takes raw pixels). Returns the blob and the scale applied."""
        h, w = image.shape[:2]
        scale = self.scale_for(image)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        resized = (
            image if scale == 1.0 else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        )
        pw, ph = -nw % 32, -nh % 32
        if pw or ph:
            resized = cv2.copyMakeBorder(resized, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
        return cv2.dnn.blobFromImage(resized), scale

    def infer(self, blob: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: blob})

    def _grid(self, hh: int, ww: int) -> list[np.ndarray]:
        """Per-stride (col, row) anchor coordinates, cached per input size."""
        key = (hh, ww)
        if key not in self._grids:
            grids = []
            for s in STRIDES:
                rows, cols = hh // s, ww // s
                yy, xx = np.mgrid[0:rows, 0:cols]
                grids.append(np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32))
            self._grids[key] = grids
        return self._grids[key]

    def decode(
        self, outputs: list[np.ndarray], blob_hw: tuple[int, int], scale: float,
        threshold: float | None = None,
    ) -> list[Face]:
        """The faces scoring over ``threshold`` (None: the detector's), after NMS."""
        floor = self.score_threshold if threshold is None else threshold
        out = dict(zip(self.output_names, outputs))
        boxes, scores, kpss = [], [], []
        for s, grid in zip(STRIDES, self._grid(*blob_hw)):
            cls = out[f"cls_{s}"][0, :, 0]
            obj = out[f"obj_{s}"][0, :, 0]
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            idx = np.nonzero(score > floor)[0]
            if idx.size == 0:
                continue
            g = grid[idx]
            bb = out[f"bbox_{s}"][0, idx]
            kp = out[f"kps_{s}"][0, idx].reshape(-1, 5, 2)
            cxy = (g + bb[:, :2]) * s
            wh = np.exp(bb[:, 2:4]) * s
            boxes.append(np.concatenate([cxy - wh / 2, wh], axis=1))
            kpss.append((kp + g[:, None, :]) * s)
            scores.append(score[idx])
        if not boxes:
            return []
        xywh = np.concatenate(boxes) / scale
        sc = np.concatenate(scores)
        kps = np.concatenate(kpss) / scale
        keep = cv2.dnn.NMSBoxes(xywh.tolist(), sc.tolist(), floor, self.nms_iou)
        faces = []
        for i in np.asarray(keep).reshape(-1):
            x, y, w, h = xywh[i]
            faces.append(Face(np.array([x, y, x + w, y + h], np.float32), float(sc[i]),
                              kps[i].astype(np.float32)))
        faces.sort(key=lambda f: -f.score)
        return faces

    def detect(self, image: np.ndarray) -> list[Face]:
        blob, scale = self.prepare(image)
        floor = self.score_threshold if self.share_from is None \
            else min(self.score_threshold, self.share_from)
        found = self.decode(self.infer(blob), blob.shape[2:4], scale, floor)
        if self.share_from is not None:
            self.shared = FrameFaces(image, tuple(found), floor, scale, self.nms_iou)
        return [f for f in found if f.score > self.score_threshold]

    def reuse(self, shared: FrameFaces | None, image: np.ndarray) -> list[Face] | None:
        """The faces this detector's own run on ``image`` would give, taken from another
        detector's run on that very frame; None when that run does not cover this one (another
        frame, input scale or NMS overlap, or a floor above this threshold). Exact, not close:
        NMS keeps a box only against boxes scoring higher, so of a run down to a lower floor,
        the faces over this threshold are the ones this run would keep."""
        if (shared is None or shared.image is not image or shared.floor > self.score_threshold
                or shared.nms_iou != self.nms_iou or shared.scale != self.scale_for(image)):
            return None
        return [f for f in shared.faces if f.score > self.score_threshold]
