"""Quality gate: refuse faces too small, blurred or turned away to be matched reliably.

Field reports (autonomous-os PR #299, Frigate's min_area / blur filter) show that gating quality
cuts false accepts more than raising one shared match threshold, which costs recall instead.
The default thresholds were checked one at a time on the dev set (models/MANIFEST.md, "Quality
gate, checked on the dev set"): every stricter value only refused residents there, no looser one
gained any; that set has few small or blurred faces, so those two limits are not tuned by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gatectl.config.gates import FaceQuality
from gatectl.vision.face.detect import Face


@dataclass(frozen=True)
class QualityReport:
    face_px: float
    sharpness: float
    yaw: float
    roll_deg: float
    problem: str | None  # None = good enough; else a short reason such as "face too small"

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def score(self) -> float:
        """0..1 summary stored with a template, so better enrollment photos can be preferred."""
        return float(min(1.0, self.sharpness / 200.0) * max(0.0, 1.0 - self.yaw))


def pose(landmarks: np.ndarray) -> tuple[float, float]:
    """(yaw, roll). Yaw: horizontal offset of the nose from the eye/mouth midline, in eye
    distances (0 = frontal, ~0.5 = strongly turned); roll: angle of the eye line in degrees."""
    le, re, nose, lm, rm = landmarks
    eye_vec = re - le
    eye_dist = float(np.hypot(*eye_vec)) or 1.0
    roll = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    mid = (le + re + lm + rm) / 4.0
    # project the nose offset on the eye direction, so roll does not read as yaw
    yaw = abs(float(np.dot(nose - mid, eye_vec / eye_dist))) / eye_dist
    return yaw, roll


def sharpness(aligned: np.ndarray) -> float:
    """Variance of the Laplacian on the aligned 112x112 face: resolution-independent blur
    measure."""
    grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def _coarser(grey: np.ndarray, side: int) -> np.ndarray:
    small = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, grey.shape[::-1], interpolation=cv2.INTER_LINEAR)


def detail_ratio(aligned: np.ndarray) -> float:
    """Fine detail (finer than 1/40 of the aligned face) over coarse detail (1/16 to 1/40).

    A photo enlarged from a ~20 px face is large and, after interpolation, sharp enough for the
    Laplacian, but it has no fine detail: on tests/data real faces score 0.71-1.10, the same
    faces shrunk to 20 px and enlarged back 0.38-0.46. A ratio, so contrast and light cancel."""
    grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY).astype(np.float32)
    mid, coarse = _coarser(grey, 40), _coarser(grey, 16)
    fine_rms = float(np.sqrt(np.mean((grey - mid) ** 2)))
    return fine_rms / (float(np.sqrt(np.mean((mid - coarse) ** 2))) + 1e-6)


def assess(face: Face, aligned: np.ndarray, q: FaceQuality) -> QualityReport:
    face_px = min(face.width, face.height)
    sharp = sharpness(aligned)
    yaw, roll = pose(face.landmarks)
    problem = None
    if face_px < q.min_face_px:
        problem = f"face too small ({face_px:.0f} px < {q.min_face_px} px)"
    elif yaw > q.max_yaw or abs(roll) > q.max_roll_deg:
        problem = f"face turned away (yaw {yaw:.2f}, roll {roll:.0f} deg)"
    elif sharp < q.min_sharpness:
        problem = f"face blurred (sharpness {sharp:.0f} < {q.min_sharpness:.0f})"
    elif q.min_detail and (detail := detail_ratio(aligned)) < q.min_detail:
        problem = (
            f"face enlarged or blurred, no fine detail (detail {detail:.2f} < {q.min_detail:.2f})"
        )
    return QualityReport(face_px, sharp, yaw, roll, problem)
