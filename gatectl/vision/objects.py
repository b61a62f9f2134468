"""Object detectors (ONNX) for the elevator e-bike gate, one class per output layout ("family").

Pluggable: a site drops in its own model of a supported family, with its class map in the config.

- ``yolox``: the YOLOX head as exported by YOLOX's own tools (raw ``[1, A, 5 + C]`` rows
  ``x, y, w, h, obj, class probs`` over strides 8/16/32, decoded here; input BGR 0..255,
  letterboxed top-left with pad 114). The bundled YOLOX-nano is one.
- ``yolov8``: the anchor-free layout most current trainers export (``[1, 4 + C, A]``: box centre
  and size in input pixels, then per-class scores, no objectness; input RGB 0..1, letterboxed
  centred with pad 114) - YOLOv8/v9/v10-without-NMS/11 style heads.

Optionally the image is also cut into a grid of overlapping tiles (2x2 of 60% of each side, 3x3
of 45%, 4x4 of 35%): in a top-down wide-angle car a two-wheeler is small and distorted, and the
tiles give the model more pixels, at one model run per tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from pydantic import ValidationError

from gatectl.config.gates import EbikeDetectorConfig
from gatectl.vision.letterbox import letterbox
from gatectl.vision.models import ModelError

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

TILE_FRACTION = {2: 0.6, 3: 0.45, 4: 0.35}  # grid -> tile side as a fraction of the image
NMS_IOU = 0.45
PAD = 114


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # x1, y1, x2, y2 in image pixels
    score: float
    label: str


class TiledDetector:
    """Letterbox, run, decode (per family), then tiles and class-aware NMS (shared)."""

    rgb: bool
    scale: float  # pixel value multiplier
    centred: bool  # letterbox padding on both sides (else right/bottom only)

    def __init__(
        self,
        session: InferenceSession,
        input_size: int,
        classes: dict[str, int],
        threshold: float,
        tiles: int = 2,
    ) -> None:
        """``tiles``: 1 = the whole image only; 2, 3, 4 = also a 2x2, 3x3 or 4x4 grid of tiles."""
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.size = input_size
        self.classes = classes
        self.threshold = threshold
        self.tiles = tiles
        self._idx = np.array(list(classes.values()))

    def _decode(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's first output -> (cx, cy, w, h in input pixels, [A, k] scores of the config
        classes)."""
        raise NotImplementedError

    def _run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        canvas, r, (dx, dy) = letterbox(image, self.size, PAD, self.centred, int)
        if self.rgb:
            canvas = canvas[:, :, ::-1]
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32) * self.scale
        xywh, scores = self._decode(self.session.run(None, {self.input_name: blob})[0][0])
        best = scores.max(1)
        keep = best >= self.threshold
        xywh, scores = xywh[keep], scores[keep]
        xy = xywh[:, :2] - np.array([dx, dy], np.float32)
        boxes = np.concatenate([xy - xywh[:, 2:] / 2, xy + xywh[:, 2:] / 2], 1) / r
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
        keep = cv2.dnn.NMSBoxesBatched(
            np.c_[b[:, :2], b[:, 2:] - b[:, :2]].tolist(),
            s.tolist(),
            k.tolist(),
            self.threshold,
            NMS_IOU,
        )
        return sorted(
            (
                Detection(b[i].astype(np.float32), float(s[i]), names[int(k[i])])
                for i in np.asarray(keep).reshape(-1)
            ),
            key=lambda d: -d.score,
        )


def yolox_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The YOLOX head's anchor points: cell ``(x, y)`` ``[A, 2]`` and stride ``[A, 1]``, strides
    8/16/32."""
    grids, strides = [], []
    for stride in (8, 16, 32):
        n = size // stride
        yv, xv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack([xv, yv], -1).reshape(-1, 2))
        strides.append(np.full((n * n, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)


class YoloxDetector(TiledDetector):
    rgb, scale, centred = False, 1.0, False

    def __init__(
        self,
        session: InferenceSession,
        input_size: int,
        classes: dict[str, int],
        threshold: float,
        tiles: int = 2,
    ) -> None:
        super().__init__(session, input_size, classes, threshold, tiles)
        self._grid, self._stride = yolox_grid(input_size)

    def _decode(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xy = (out[:, :2] + self._grid) * self._stride
        wh = np.exp(out[:, 2:4]) * self._stride
        return np.concatenate([xy, wh], 1), out[:, 4:5] * out[:, 5 + self._idx]


class Yolov8Detector(TiledDetector):
    rgb, scale, centred = True, 1 / 255, True

    def _decode(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return out[:4].T, out[4 + self._idx].T


FAMILIES: dict[str, type[TiledDetector]] = {"yolox": YoloxDetector, "yolov8": Yolov8Detector}


def open_detector(session: InferenceSession, family: str, input_size: int,
                  classes: dict[str, int], threshold: float, tiles: int,
                  where: str) -> TiledDetector:
    """Check the model against its config (``where`` names the config table), then wrap it.

    A model whose fixed input size or class count does not fit the config fails here, at
    start, with one line - not as an IndexError in the gate worker at the first frame.
    """
    shape = session.get_inputs()[0].shape
    fixed = [d for d in shape[2:4] if isinstance(d, int)]
    if fixed and any(d != input_size for d in fixed):
        raise ModelError(
            f"{where}.input_size = {input_size}, but the model takes {shape[2]}x{shape[3]} images"
        )
    out = session.get_outputs()[0].shape
    if len(out) != 3:
        raise ModelError(f"{where}.family = '{family}', but the model's output has shape {out}")
    width, anchors = (out[2], out[1]) if family == "yolox" else (out[1], out[2])
    if isinstance(width, int) and isinstance(anchors, int) and width > anchors:
        layout = "[1, A, 5 + C]" if family == "yolox" else "[1, 4 + C, A]"
        raise ModelError(
            f"{where}.family = '{family}' expects an output {layout}, but the model gives {out}"
        )
    if isinstance(width, int):
        n_classes = width - (5 if family == "yolox" else 4)
        bad = {k: v for k, v in classes.items() if not 0 <= v < n_classes}
        if bad:
            raise ModelError(f"{where}.classes {bad}: the model has classes 0..{n_classes - 1}")
    return FAMILIES[family](session, input_size, classes, threshold, tiles)


@dataclass(frozen=True)
class DetectorLayout:
    """What an ONNX detector is, read from its inputs and outputs alone."""

    family: str
    input_size: int
    n_classes: int


def anchor_count(size: int) -> int:
    """Rows of a stride 8/16/32 head on a ``size`` input (3549 at 416): what A must be."""
    return sum((size // stride) ** 2 for stride in (8, 16, 32))


def detector_layout(session: InferenceSession, path: Path) -> DetectorLayout:
    """The family, input side and class count of a detector a site brings, or one ModelError
    naming the file and the shape that does not fit: checked before the model is installed, so a
    face model or a wrong export never reaches an elevator."""
    inputs = session.get_inputs()
    shape = inputs[0].shape
    if (len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(shape) != 4
            or shape[:2] != [1, 3] or not all(isinstance(d, int) for d in shape[2:])
            or shape[2] != shape[3]):
        got = ", ".join(f"{i.name} {i.shape} {i.type}" for i in inputs)
        raise ModelError(f"{path}: input {got}: a detector takes one [1, 3, S, S] float image")
    size = int(shape[2])
    try:
        EbikeDetectorConfig(input_size=size)
    except ValidationError:
        field = EbikeDetectorConfig.model_fields["input_size"]
        raise ModelError(
            f"{path}: input side {size} does not fit gates.detector.input_size "
            f"({field.description})"
        ) from None
    out = session.get_outputs()[0].shape
    anchors = anchor_count(size)
    if len(out) == 3 and out[0] == 1 and all(isinstance(d, int) for d in out):
        if out[1] == anchors and out[2] > 5:
            return DetectorLayout("yolox", size, int(out[2]) - 5)
        if out[2] == anchors and out[1] > 4:
            return DetectorLayout("yolov8", size, int(out[1]) - 4)
    raise ModelError(
        f"{path}: output {out} fits neither yolox [1, {anchors}, 5 + C] nor yolov8 "
        f"[1, 4 + C, {anchors}] (A = {anchors} anchors for a {size} px input)"
    )
