"""Detect, rectify, read and colour every plate in a frame: what a plate lane sees."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gatectl.core.metrics import INFERENCE
from gatectl.domain import plate_format
from gatectl.vision.models import ModelStore
from gatectl.vision.plate.color import PlateColour
from gatectl.vision.plate.crop import merge_rows, rectify
from gatectl.vision.plate.detect import PlateBox, PlateDetector
from gatectl.vision.plate.read import PlateReader


@dataclass(frozen=True)
class PlateObservation:
    det: PlateBox
    text: str | None  # None: not readable as a plate
    char_conf: tuple[float, ...]
    colour: str | None
    kind: str | None  # plate_format kind

    @property
    def min_conf(self) -> float:
        return min(self.char_conf, default=0.0)


class PlateAnalyzer:
    def __init__(self, models: ModelStore, detector_size: int = 320, detect_threshold: float = 0.5):
        self.detector = PlateDetector(models, detector_size, detect_threshold)
        self.reader = PlateReader(models)
        self.colour = PlateColour(models)

    def analyze(self, image: np.ndarray) -> list[PlateObservation]:
        out = []
        with INFERENCE.labels("plate_detect").time():
            found = self.detector.detect(image)
        for det in found:
            det = self._refine(image, det)
            crop = rectify(image, det.corners)
            with INFERENCE.labels("plate_read").time():
                reading = self.reader.read(merge_rows(crop) if det.double else crop)
            kind = plate_format.kind_of(reading.text) if reading.text else None
            colour = self.colour.classify(crop, kind) if reading.text else None
            out.append(PlateObservation(det, reading.text, reading.char_conf, colour, kind))
        return out

    def _refine(self, image: np.ndarray, det: PlateBox) -> PlateBox:
        """Corners again from a region around the plate: in a whole 1280x720 frame squeezed to
        320 px a plate is a few pixels high, and a corner off by one of them costs characters."""
        h, w = image.shape[:2]
        x1, y1, x2, y2 = det.box
        bw, bh = x2 - x1, y2 - y1
        rx1, ry1 = int(max(0, x1 - bw)), int(max(0, y1 - 2 * bh))
        rx2, ry2 = int(min(w, x2 + bw)), int(min(h, y2 + 2 * bh))
        if (rx2 - rx1) * (ry2 - ry1) * 4 > w * h:  # already large in the frame: nothing to gain
            return det
        found = self.detector.detect(image[ry1:ry2, rx1:rx2])
        if not found:
            return det
        best = found[0]
        off = np.array([rx1, ry1], np.float32)
        return PlateBox(best.box + np.tile(off, 2), best.corners + off, det.score, det.double)
