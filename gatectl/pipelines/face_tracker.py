"""Face tracks across frames and the votes that confirm an identity. Pure: boxes and times in.

One pass must give one decision, so identity is confirmed per track (the same face over
consecutive frames), needing ``need`` agreeing votes among the last ``window`` usable frames.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from gatectl.vision.gallery import OwnerKey


@dataclass(frozen=True)
class Vote:
    kind: str  # match | unknown | ambiguous | spoof
    owner: OwnerKey | None = None
    score: float = 0.0

    @property
    def key(self) -> tuple[str, OwnerKey | None]:
        return self.kind, self.owner


@dataclass
class Track:
    id: int
    box: np.ndarray
    last_t: float
    window: int
    votes: deque[Vote] = field(init=False)
    outcome: str | None = None  # the decision already taken for this track, if any

    def __post_init__(self) -> None:
        self.votes = deque(maxlen=self.window)

    def confirmed(self, need: int) -> Vote | None:
        """The identity at least ``need`` of the recent votes agree on, with their mean score."""
        if not self.votes:
            return None
        key, n = Counter(v.key for v in self.votes).most_common(1)[0]
        if n < need:
            return None
        scores = [v.score for v in self.votes if v.key == key]
        return Vote(key[0], key[1], float(np.mean(scores)))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class FaceTracker:
    def __init__(self, window: int, min_iou: float = 0.3, timeout_s: float = 1.5):
        self.window = window
        self.min_iou = min_iou
        self.timeout_s = timeout_s
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)

    def update(self, boxes: list[np.ndarray], t: float) -> list[Track]:
        """Assign each box to a live track (greedy by overlap) or a new one; drop stale tracks."""
        self.tracks = [tr for tr in self.tracks if t - tr.last_t <= self.timeout_s]
        pairs = sorted(
            ((iou(b, tr.box), bi, ti) for bi, b in enumerate(boxes) for ti, tr in enumerate(self.tracks)),
            reverse=True,
        )
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, bi, ti in pairs:
            if overlap < self.min_iou:
                break
            if bi in assigned or ti in used:
                continue
            assigned[bi] = self.tracks[ti]
            used.add(ti)
        out = []
        for bi, box in enumerate(boxes):
            tr = assigned.get(bi)
            if tr is None:
                tr = Track(next(self._ids), box, t, self.window)
                self.tracks.append(tr)
            tr.box, tr.last_t = box, t
            out.append(tr)
        return out

    def reset(self) -> None:
        self.tracks = []
