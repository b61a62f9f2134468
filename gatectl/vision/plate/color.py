"""Plate colour: the HyperLPR3 classifier (blue / green / yellow, Apache-2.0), corrected by
what the text already says (the classifier knows no white or black plates)."""

from __future__ import annotations

import cv2
import numpy as np

from gatectl.vision.models import ModelStore

CLASSES = ("blue", "green", "yellow")  # models/MANIFEST.md §5
TEXT_COLOURS = {
    "police": "white",
    "armed_police": "white",
    "consulate": "black",
    "hk_macau": "black",
    "new_energy_small": "green",
    "new_energy_large": "green",
    "coach": "yellow",
}


class PlateColour:
    def __init__(self, models: ModelStore):
        self.session = models.session("plate_color")
        self.input_name = self.session.get_inputs()[0].name

    def classify(self, crop: np.ndarray, kind: str | None) -> str:
        if kind in TEXT_COLOURS:
            return TEXT_COLOURS[kind]
        blob = cv2.dnn.blobFromImage(cv2.resize(crop, (96, 96)), 1 / 255.0)  # BGR, /255
        return CLASSES[int(self.session.run(None, {self.input_name: blob})[0][0].argmax())]
