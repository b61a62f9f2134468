"""Vehicles across frames, and their plate decided by a per-character vote.

A plate box that overlaps (or sits next to) a live track's last box continues that track; a
track unseen for ``timeout_s`` has left. Each frame's whole-plate reading is a vote: the plate
length most voted for wins, then every position takes the character with the largest summed
confidence, so one blurred frame cannot change a character the other frames agree on.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from gatectl.domain import plate_format
from gatectl.vision.plate.analyzer import PlateObservation


@dataclass
class PlateTrack:
    id: int
    box: np.ndarray
    last_t: float
    det_score: float = 0.0  # best detector score seen
    readings: list[tuple[str, tuple[float, ...]]] = field(default_factory=list)
    colours: Counter = field(default_factory=Counter)
    decided: bool = False
    best_frame: np.ndarray | None = None  # the frame with the best detector score: the snapshot

    def vote(self) -> tuple[str | None, tuple[float, ...]]:
        """(plate, confidence per character) from all readings so far."""
        if not self.readings:
            return None, ()
        length = Counter(len(t) for t, _ in self.readings).most_common(1)[0][0]
        same = [(t, c) for t, c in self.readings if len(t) == length]
        chars, confs = [], []
        for i in range(length):
            score: dict[str, float] = defaultdict(float)
            for t, c in same:
                score[t[i]] += c[i]
            best = max(score, key=score.__getitem__)
            chars.append(best)
            confs.append(score[best] / len(same))  # disagreeing frames lower the confidence
        plate = "".join(chars)
        if not plate_format.is_plate(plate):  # positions mixed from different formats
            plate = Counter(t for t, _ in same).most_common(1)[0][0]
            confs = [float(np.mean([c[i] for t, c in same if t == plate])) for i in range(length)]
        return plate, tuple(round(float(c), 4) for c in confs)

    @property
    def colour(self) -> str | None:
        return self.colours.most_common(1)[0][0] if self.colours else None


class PlateTracker:
    def __init__(self, timeout_s: float = 2.0):
        self.timeout_s = timeout_s
        self.tracks: list[PlateTrack] = []
        self._next = 1

    def reset(self) -> None:
        self.tracks.clear()

    def update(
        self, observations: list[PlateObservation], frame: np.ndarray, t: float
    ) -> list[PlateTrack]:
        """Add one frame's plates; returns the tracks that ended (unseen for ``timeout_s``)."""
        for obs in observations:
            track = self._match(obs.det.box)
            if track is None:
                track = PlateTrack(self._next, obs.det.box, t)
                self._next += 1
                self.tracks.append(track)
            track.box, track.last_t = obs.det.box, t
            if obs.det.score > track.det_score:
                track.det_score, track.best_frame = obs.det.score, frame
            if obs.text is not None:
                track.readings.append((obs.text, obs.char_conf))
                if obs.colour:
                    track.colours[obs.colour] += 1
        ended = [tr for tr in self.tracks if t - tr.last_t > self.timeout_s]
        self.tracks = [tr for tr in self.tracks if tr not in ended]
        return ended

    def flush(self) -> list[PlateTrack]:
        """End every track (end of a replayed file)."""
        ended, self.tracks = self.tracks, []
        return ended

    def _match(self, box: np.ndarray) -> PlateTrack | None:
        best, best_d = None, 0.0
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        for tr in self.tracks:
            b = tr.box
            w = max(b[2] - b[0], box[2] - box[0])
            d = np.hypot((b[0] + b[2]) / 2 - cx, (b[1] + b[3]) / 2 - cy) / max(w, 1.0)
            if d < 1.5 and (best is None or d < best_d):
                best, best_d = tr, d
        return best
