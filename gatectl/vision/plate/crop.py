"""Plate rectification from the detector's four corners, and double-layer plates as one line."""

from __future__ import annotations

import cv2
import numpy as np


def rectify(image: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Perspective-warp the plate (corners TL, TR, BR, BL) to a frontal crop of its own size."""
    tl, tr, br, bl = corners.astype(np.float32)
    w = round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    h = round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    w, h = max(w, 8), max(h, 4)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    return cv2.warpPerspective(
        image, cv2.getPerspectiveTransform(corners.astype(np.float32), dst), (w, h)
    )


def merge_rows(crop: np.ndarray) -> np.ndarray:
    """A two-row plate as one text line: the top row (top 5/12: province + letter) resized to
    the bottom row's size (from 1/3 down) and put before it, as the plate reads."""
    h = crop.shape[0]
    top = crop[: int(h * 5 / 12)]
    bottom = crop[int(h / 3):]
    top = cv2.resize(top, (bottom.shape[1], bottom.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.hstack([top, bottom])
