"""Align a face to the 112x112 ArcFace template from its 5 landmarks (similarity transform)."""

from __future__ import annotations

import cv2
import numpy as np

ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float32,
)


def align_face(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """112x112 BGR crop. LMEDS keeps one bad landmark from skewing the whole transform."""
    m, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), ARCFACE_112, method=cv2.LMEDS)
    if m is None:  # degenerate landmarks (all on a line); fall back to least squares
        m, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), ARCFACE_112)
    return cv2.warpAffine(image, m, (112, 112), flags=cv2.INTER_LINEAR, borderValue=0)
