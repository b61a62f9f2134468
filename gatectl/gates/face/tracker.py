"""Face tracks across frames and the votes that confirm an identity. Pure: boxes and times in.

One pass must give one decision, so identity is confirmed per track (the same face over
consecutive frames). Two rules: ``votes`` needs ``need`` agreeing per-frame votes among the
last ``window`` usable frames; ``fused`` (the default) matches the mean of the track's live
embeddings once it has ``need`` of them, so a frame that alone falls just short of the
threshold still counts, and one frame's noise does not make the decision.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gatectl.domain.records import OwnerKey
from gatectl.gates.base import iou


@dataclass(frozen=True)
class Vote:
    kind: str  # match | unknown | ambiguous | spoof | live (fused rule: identity decided later)
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
    embeddings: deque[np.ndarray] = field(init=False)  # of the frames that passed liveness
    outcome: str | None = None  # the decision already taken for this track, if any

    def __post_init__(self) -> None:
        self.votes = deque(maxlen=self.window)
        self.embeddings = deque(maxlen=self.window)

    def confirmed(self, need: int) -> Vote | None:
        """The identity at least ``need`` of the recent votes agree on, with their mean score."""
        if not self.votes:
            return None
        key, n = Counter(v.key for v in self.votes).most_common(1)[0]
        if n < need:
            return None
        scores = [v.score for v in self.votes if v.key == key]
        return Vote(key[0], key[1], float(np.mean(scores)))


def fuse(vectors: list[np.ndarray]) -> np.ndarray:
    """One embedding for several frames of one face: the normalised mean (template averaging)."""
    m = np.mean(np.asarray(vectors, np.float32), axis=0)
    return (m / max(float(np.linalg.norm(m)), 1e-12)).astype(np.float32)


def confirm(
    track: Track, need: int, rule: str, identify_fused: Callable[[np.ndarray], Vote]
) -> Vote | None:
    """The track's decision so far (None = not yet). A spoof is confirmed by votes under either
    rule; under ``fused`` the identity comes from ``identify_fused`` on the fused embedding."""
    if rule == "votes":
        return track.confirmed(need)
    for refusal in ("spoof", "too_close"):  # liveness refusals are per-frame votes either way
        scores = [v.score for v in track.votes if v.kind == refusal]
        if len(scores) >= need:
            return Vote(refusal, None, float(np.mean(scores)))
    if len(track.embeddings) < need:
        return None
    return identify_fused(fuse(list(track.embeddings)))


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
            (
                (iou(b, tr.box), bi, ti)
                for bi, b in enumerate(boxes)
                for ti, tr in enumerate(self.tracks)
            ),
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
