"""Vehicle lane: frame -> plates -> vehicle tracks -> voted plate -> rules -> event, barrier,
record.

One vehicle, one decision, one event: a track decides as soon as ``min_votes`` frames agree on
a whole plate whose detector score and every character's confidence pass their thresholds (the
barrier should rise while the car rolls up), or, if it never gets there, when the vehicle has
gone - then as `plate unreadable` or `low confidence`, never opening. Every decided vehicle
leaves an event with its best frame as the snapshot ("every car leaves its plate"), and an
entry or exit record. The event is committed before the barrier moves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gatectl.config.gates import PlateGateConfig
from gatectl.control.controls import Controls
from gatectl.core.metrics import DECISIONS
from gatectl.core.safe_text import shown
from gatectl.domain import plate_format
from gatectl.domain.access import Verdict
from gatectl.domain.plate_rules import decide_plate
from gatectl.domain.records import Event
from gatectl.gates.base import Decision, GateView, Mark, box_of, event_json
from gatectl.gates.plate.tracker import PlateTrack, PlateTracker
from gatectl.store import Store
from gatectl.store.db import StoreError
from gatectl.store.recorder import EventRecorder
from gatectl.vision.plate.analyzer import PlateAnalyzer, PlateObservation

log = logging.getLogger("gatectl.plate_lane")


@dataclass(frozen=True)
class LaneDecision(Decision):
    """One vehicle's decision; ``score`` is the lowest character confidence of the voted plate."""

    plate: str | None
    colour: str | None
    event: Event

    def as_json(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "plate": self.plate,
            "color": self.colour,
            "decision": self.decision,
            "reason": self.reason,
            "score": round(self.score or 0.0, 4),
            **event_json(self.event),
        }


class PlateLane:
    def __init__(
        self,
        cfg: PlateGateConfig,
        analyzer: PlateAnalyzer,
        store: Store,
        recorder: EventRecorder,
        controls: Controls,
        wall_clock: Callable[[], float],
    ):
        self.cfg = cfg
        self.analyzer = analyzer
        self.store = store
        self.recorder = recorder
        self.controls = controls
        self.wall_clock = wall_clock
        self.tracker = PlateTracker(cfg.track_timeout_s)
        self._recent: dict[str, float] = {}  # plate -> frame time of its decision (cooldown)
        self.last_observations: list[PlateObservation] = []
        self._seen: tuple[float, np.ndarray, list[PlateObservation]] | None = None
        self.frames = 0
        self.decided = 0  # vehicles decided (one event each)

    def reset(self) -> None:
        self.tracker.reset()
        self._recent.clear()

    def health(self) -> dict[str, Any]:
        return {"frames": self.frames, "vehicles_decided": self.decided}

    def process(self, image: np.ndarray, t: float) -> list[LaneDecision]:
        self.frames += 1
        self.last_observations = obs = self.analyzer.analyze(image)
        self._seen = (time.monotonic(), image, obs)
        ended = self.tracker.update(obs, image, t)
        out = [
            d
            for tr in self.tracker.tracks
            if not tr.decided and (d := self._try(tr, t, final=False))
        ]
        out += [d for tr in ended if not tr.decided and (d := self._try(tr, t, final=True))]
        return out

    def view(self) -> GateView | None:
        """The last frame with its plates as read in that frame ("?" when unreadable)."""
        if self._seen is None:
            return None
        t, image, obs = self._seen
        return GateView(image, t, tuple(Mark(box_of(o.det.box), o.text or "?", "plate")
                                        for o in obs))

    def flush(self, t: float) -> list[LaneDecision]:
        """Decide every vehicle still in view (end of a replayed file)."""
        return [
            d
            for tr in self.tracker.flush()
            if not tr.decided and (d := self._try(tr, t, final=True))
        ]

    def _try(self, track: PlateTrack, t: float, final: bool) -> LaneDecision | None:
        th = self.cfg.thresholds
        if track.det_score < th.detect:
            return None  # a sign or a badge the detector is unsure of: not a vehicle
        plate, conf = track.vote()
        confident = plate is not None and min(conf) >= th.char and plate_format.is_plate(plate)
        if not final and not (confident and len(track.readings) >= self.cfg.min_votes):
            return None
        track.decided = True
        if plate is not None and t - self._recent.get(plate, -1e18) < self.cfg.cooldown_s:
            return None  # the same vehicle, tracked twice
        if plate is None:
            verdict = Verdict("denied", "plate unreadable", "access")
        elif not confident:
            weakest = int(np.argmin(conf))
            verdict = Verdict(
                "denied",
                f"low confidence (character {weakest + 1} '{plate[weakest]}' "
                f"{conf[weakest]:.2f} < {th.char:.2f})",
                "access",
            )
        else:
            verdict = decide_plate(self.store.plates(plate), self.cfg.direction, self.wall_clock(),
                                   self.cfg.open_unknown_on_exit)
            self._recent[plate] = t
        score = min(conf) if conf else 0.0
        label = plate or "?"
        event = self.recorder.record(
            self.cfg.name,
            verdict.kind,
            verdict.decision,
            f"{label} {self.cfg.direction}: {verdict.reason}",
            track.best_frame,
            score=score,
        )
        if plate is not None and confident:
            try:
                self.store.record_pass(
                    plate,
                    self.cfg.name,
                    self.cfg.direction,
                    event.ts,
                    verdict.decision,
                    event.id,
                    wait_s=self.recorder.lock_wait_s,
                )
            except StoreError as exc:  # the event (spooled) says what happened; the barrier goes on
                log.error("lane %s: pass of %s not recorded (%s)", self.cfg.name, plate, exc)
        if verdict.decision == "granted":
            self.controls.open_barrier(self.cfg.barrier)
        log.info(
            "lane %s: %s %s (%s)",
            self.cfg.name,
            shown(label),
            verdict.decision,
            shown(verdict.reason),
        )
        self.decided += 1
        DECISIONS.labels("plate", verdict.decision).inc()
        return LaneDecision(self.cfg.name, verdict.decision, verdict.reason, score, plate=plate,
                            colour=track.colour, event=event)
