"""The motion / presence pre-filter: whether a frame is worth running the models on.

An empty corridor should cost almost nothing, so before any model the frame is shrunk to a
thumbnail (every n-th pixel, then an area resize to ``side`` pixels wide: well under a
millisecond for 1080p), turned grey and compared with the previous thumbnail. Enough changed
pixels is motion. Frames keep being analysed for ``hold_s`` after the last motion: a person
who walks up and then stands still in front of the door must still be recognised, and the
gates' trackers need several frames of that person to decide. Lighting that drifts slowly
changes few pixels between two frames, so it is not motion; a light switched on is, once.
"""

from __future__ import annotations

import cv2
import numpy as np

from gatectl.config.run import MotionConfig


class MotionFilter:
    """Per gate: ``wants(image, t)`` says whether to analyse this frame; counts what it spared."""

    def __init__(self, cfg: MotionConfig) -> None:
        self.cfg = cfg
        self._prev: np.ndarray | None = None
        self._hold_until = float("-inf")
        self._last_analysed = float("-inf")
        self.spared = 0  # frames not analysed for want of motion

    def thumbnail(self, image: np.ndarray) -> np.ndarray:
        """The grey ``side``-wide thumbnail the comparison runs on."""
        w = image.shape[1]
        step = max(1, w // (self.cfg.side * 4))  # strided first: the resize then reads little
        small = image[::step, ::step]
        sh, sw = small.shape[:2]
        side = min(self.cfg.side, sw)
        thumb = cv2.resize(small, (side, max(1, round(sh * side / sw))),
                           interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY) if thumb.ndim == 3 else thumb

    def moved(self, image: np.ndarray) -> bool:
        """Whether enough of the thumbnail changed since the previous frame (the first frame,
        and a frame of another size, count as motion)."""
        thumb = self.thumbnail(image)
        prev, self._prev = self._prev, thumb
        if prev is None or prev.shape != thumb.shape:
            return True
        changed = cv2.absdiff(prev, thumb) >= self.cfg.pixel_delta
        return float(np.count_nonzero(changed)) >= self.cfg.min_changed * changed.size

    def wants(self, image: np.ndarray, t: float) -> bool:
        """Analyse the frame taken at ``t``: motion now, within the hold after motion, or the
        periodic look of ``idle_every_s``. Always True when the filter is off."""
        if not self.cfg.enabled:
            return True
        if self.moved(image):
            self._hold_until = t + self.cfg.hold_s
        every = self.cfg.idle_every_s
        if t <= self._hold_until or (every > 0 and t - self._last_analysed >= every):
            self._last_analysed = t
            return True
        self.spared += 1
        return False
