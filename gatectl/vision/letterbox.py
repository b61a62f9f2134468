"""The one letterbox: an image scaled to fit a square model input, the rest padded.

Detectors trained on square inputs (the plate detector, YOLOX / YOLOv8 object detectors) see
the whole frame undistorted; boxes come back through ``(xy - offset) / scale``.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


def letterbox(
    image: np.ndarray,
    size: int,
    pad: int = 0,
    centred: bool = True,
    to_pixels: Callable[[float], int] = round,
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """(the ``size`` x ``size`` canvas, the scale, the (dx, dy) offset of the image on it).
    ``centred`` pads both sides (else right and bottom only); ``to_pixels`` rounds the scaled
    size the way the model's own preprocessing did (``int`` truncates, as YOLOX's does)."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    nw, nh = max(1, to_pixels(w * r)), max(1, to_pixels(h * r))
    dx, dy = ((size - nw) // 2, (size - nh) // 2) if centred else (0, 0)
    canvas = np.full((size, size, 3), pad, np.uint8)
    canvas[dy : dy + nh, dx : dx + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, r, (dx, dy)
