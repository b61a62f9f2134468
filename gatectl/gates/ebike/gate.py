"""Elevator car camera: e-bikes in the car -> confirmed -> the car's doors held, alarm,
announcement.

Only the car region (a polygon in the config) is looked at, so a moped waiting on the landing
outside the open doors is not an e-bike *in the car*. A frame counts when the detector finds an
e-bike class there; ``confirm_frames`` of the last ``confirm_window`` frames confirm it; with
``track_threshold`` set, so does one tracked object whose weaker detections add up over the
window (`gates.ebike.tracker`). From
then on every frame that still sees it renews the elevator hold (`control.elevator_hold`: short
board-timed pulses, a cap per episode, overridden by the fire alarm), whose episode starts with
an ``ebike_in_car`` alert with a snapshot; the announcement is stored and goes to the display
(`gatectl.hw.display`). The hold pauses once no frame has seen the e-bike for the elevator's
``release_after_s``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from gatectl.config.gates import EbikeGateConfig
from gatectl.control.controls import Controls
from gatectl.gates.base import Decision
from gatectl.gates.ebike.tracker import EvidenceTracker
from gatectl.hw.display import Display
from gatectl.store import Store
from gatectl.vision.objects import Detection, TiledDetector

log = logging.getLogger("gatectl.ebike")


@dataclass(frozen=True)
class EbikeDecision(Decision):
    """``decision``: "ebike" (confirmed: the hold starts) or "clear" (gone)."""


class EbikeGate:
    def __init__(
        self,
        cfg: EbikeGateConfig,
        detector: TiledDetector,
        controls: Controls,
        store: Store,
        hold_cap_s: float,
        wall_clock: Callable[[], float],
        display: Display | None = None,
    ):
        """``display``: where the announcement is shown (queued: a gate worker never waits)."""
        self.cfg = cfg
        self.display = display
        self.detector = detector
        self.controls = controls
        self.store = store
        self.hold_cap_s = hold_cap_s
        self.wall_clock = wall_clock
        self.targets = set(cfg.detector.ebike_classes) | (
            set() if cfg.bicycles_allowed else {"bicycle"}
        )
        self.window: deque[bool] = deque(maxlen=cfg.confirm_window)
        self.tracker = (
            EvidenceTracker(cfg.confirm_window, cfg.evidence)
            if cfg.track_threshold is not None else None
        )
        self.active = False
        self.last_detections: list[Detection] = []
        self.frames = 0
        self.confirmed = 0  # e-bikes confirmed (holds started)

    def reset(self) -> None:
        self.window.clear()
        if self.tracker is not None:
            self.tracker.reset()
        self.active = False

    def flush(self, t: float) -> list[EbikeDecision]:
        """Nothing to decide at the end of an input: the hold follows the frames."""
        return []

    def find(self, image: np.ndarray) -> list[Detection]:
        """E-bike detections inside the car region, in image pixels (from ``track_threshold``
        when it is set: `decide` tells the weak from the strong)."""
        h, w = image.shape[:2]
        if self.cfg.car_region is None:
            dets = self.detector.detect(image)
            return [d for d in dets if d.label in self.targets]
        poly = np.array([(x * w, y * h) for x, y in self.cfg.car_region], np.float32)
        x0, y0 = np.floor(poly.min(0)).astype(int)
        x1, y1 = np.ceil(poly.max(0)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [poly.astype(np.int32)], 255)
        crop = image[y0:y1, x0:x1].copy()
        crop[mask[y0:y1, x0:x1] == 0] = 114  # the landing is grey: nothing to find there
        out = []
        for d in self.detector.detect(crop):
            box = d.box + np.array([x0, y0, x0, y0], np.float32)
            centre = (float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2)
            if d.label in self.targets and cv2.pointPolygonTest(poly, centre, False) >= 0:
                out.append(Detection(box, d.score, d.label))
        return out

    def health(self) -> dict[str, Any]:
        return {"frames": self.frames, "ebikes_confirmed": self.confirmed, "holding": self.active}

    def process(self, image: np.ndarray, t: float) -> list[EbikeDecision]:
        self.frames += 1
        return self.decide(self.find(image), image, t)

    def decide(self, dets: list[Detection], image: np.ndarray, t: float) -> list[EbikeDecision]:
        """One frame's detections -> confirmation -> hold renewal (the step after the model)."""
        tracked = self.tracker.update(dets) if self.tracker is not None else None
        dets = [d for d in dets if d.score >= self.cfg.detector.threshold]
        if tracked is not None and not dets:
            dets = [tracked]  # the tracked object stands for this frame's sighting
        self.last_detections = dets
        self.window.append(bool(dets))
        out = []
        if sum(self.window) >= self.cfg.confirm_frames or tracked is not None:
            best = dets[0] if dets else None
            reason = f"{best.label} {best.score:.2f} in the car" if best else "e-bike in the car"
            if not self.active:
                self.active = True
                until = self.wall_clock() + self.hold_cap_s
                self.store.announce(self.cfg.announcement, self.cfg.elevator, until)
                if self.display is not None:
                    self.display.show_later(self.cfg.announcement, self.cfg.elevator, until)
                log.warning("elevator %s: %s; holding the doors", self.cfg.elevator, reason)
                self.confirmed += 1
                out.append(
                    EbikeDecision(self.cfg.name, "ebike", reason, best.score if best else 0.0)
                )
            if dets:
                self.controls.ebike(self.cfg.elevator, image, reason)
        elif self.active and not any(self.window):
            self.active = False
            out.append(EbikeDecision(self.cfg.name, "clear", "no e-bike in the car", 0.0))
        return out
