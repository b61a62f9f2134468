"""Evidence over frames: weak detections of one tracked object add up to a confirmation.

A moped pushed into the car under a quilt may score below the gate's threshold on every single
frame, yet be found, frame after frame, at about the same place. Each weak detection (score at
least ``track_threshold``) joins the track whose last box overlaps it most; a track's evidence is
the sum of its scores over the last ``window`` frames (a frame without it adds 0). A track whose
evidence reaches ``evidence`` is confirmed. Noise that flickers in one frame and out the next, or
jumps about the image, never builds up; what builds up is one object that stays.

Pure: fed detections frame by frame, no clock, no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gatectl.gates.base import iou
from gatectl.vision.objects import Detection

MAX_TRACKS = 16  # a frame full of junk detections costs bounded work and memory


@dataclass
class _Track:
    last: Detection
    scores: deque[float] = field(default_factory=deque)

    @property
    def evidence(self) -> float:
        return sum(self.scores)


class EvidenceTracker:
    def __init__(self, window: int, evidence: float, min_iou: float = 0.3) -> None:
        self.window = window
        self.evidence = evidence
        self.min_iou = min_iou
        self.tracks: list[_Track] = []

    def reset(self) -> None:
        self.tracks.clear()

    def update(self, dets: list[Detection]) -> Detection | None:
        """One frame's weak detections -> this frame's detection of the strongest confirmed
        track, or None while no track seen in this frame has gathered enough evidence."""
        pairs = sorted(
            ((iou(d.box, tr.last.box), di, ti)
             for di, d in enumerate(dets) for ti, tr in enumerate(self.tracks)),
            reverse=True,
        )
        matched: dict[int, int] = {}  # track index -> detection index
        used: set[int] = set()
        for overlap, di, ti in pairs:
            if overlap < self.min_iou:
                break
            if di not in used and ti not in matched:
                matched[ti] = di
                used.add(di)
        for ti, tr in enumerate(self.tracks):
            if ti in matched:
                tr.last = dets[matched[ti]]
            tr.scores.append(tr.last.score if ti in matched else 0.0)
            while len(tr.scores) > self.window:
                tr.scores.popleft()
        self.tracks = [tr for tr in self.tracks if any(tr.scores)]
        for di in sorted(set(range(len(dets))) - used, key=lambda i: -dets[i].score):
            if len(self.tracks) >= MAX_TRACKS:
                break
            self.tracks.append(_Track(dets[di], deque([dets[di].score])))
        confirmed = [tr for tr in self.tracks if tr.scores[-1] and tr.evidence >= self.evidence]
        return max(confirmed, key=lambda tr: tr.evidence).last if confirmed else None
