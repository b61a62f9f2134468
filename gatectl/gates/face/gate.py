"""Pedestrian face gate: frame -> faces -> tracks -> confirmed identity -> rules -> event + relay.

Order of effects on a decision: the event (with its snapshot) is committed first and the relay
pulsed after, so a door never opens without a record of why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gatectl.config.gates import FaceGateConfig
from gatectl.config.hardware import DoorConfig
from gatectl.control.controls import Controls
from gatectl.core.errors import InvariantError
from gatectl.domain.access import (
    SPOOF,
    TOO_CLOSE,
    UNKNOWN,
    EntryCheck,
    Verdict,
    decide_resident,
    decide_watchlisted,
)
from gatectl.domain.face_match import identify, size_aware_threshold
from gatectl.domain.records import Event, OwnerKey
from gatectl.gates.base import Decision, event_json
from gatectl.gates.face.tracker import FaceTracker, Track, Vote, confirm, fuse
from gatectl.people.directory import Directory
from gatectl.store.recorder import EventRecorder
from gatectl.vision.face.analyzer import FaceAnalyzer, FaceObservation
from gatectl.vision.face.liveness import TrackLiveness

log = logging.getLogger("gatectl.face_gate")

AMBIGUOUS = Verdict("denied", "ambiguous match", "access")
ANTI_PASSBACK = Verdict("denied", "anti-passback", "access")
RECENT_FRAME_S = 5.0  # an older frame shows the door as it was, not as it is


@dataclass(frozen=True)
class GateDecision(Decision):
    """What the gate decided for one face track: who (the name, for replay's output) and the
    event; a face decision always has a score."""

    score: float
    resident: str | None
    event: Event
    track: int

    def as_json(self) -> dict[str, Any]:
        return {"gate": self.gate, "decision": self.decision, "resident": self.resident,
                "reason": self.reason, "score": round(self.score, 4), **event_json(self.event)}


class FaceGate:
    def __init__(self, cfg: FaceGateConfig, door: DoorConfig, analyzer: FaceAnalyzer,
                 directory: Directory, recorder: EventRecorder, controls: Controls,
                 checks: list[EntryCheck], reenroll_after_days: float,
                 wall_clock: Callable[[], float]):
        self.cfg = cfg
        self.door = door
        self.analyzer = analyzer
        self.directory = directory
        self.recorder = recorder
        self.controls = controls
        self.checks = checks
        self.reenroll_after_days = reenroll_after_days
        self.wall_clock = wall_clock
        self.tracker = FaceTracker(cfg.confirm_window, timeout_s=cfg.track_timeout_s)
        self._last_decided: dict[OwnerKey, float] = {}  # cooldown: owner -> frame time
        self.liveness = TrackLiveness(cfg.confirm_window)
        self.liveness_refused = 0  # passes refused for liveness (spoof or too close), for metrics
        # (identities, match threshold)
        self._threshold: tuple[int, float] = (-1, cfg.thresholds.match)
        self.frames = 0
        self.last_observations: list[FaceObservation] = []
        self._last_frame: tuple[float, np.ndarray] | None = None  # (monotonic time, image)
        # an unknown face's event, fused embedding and the match threshold, for the
        # repeated-stranger rule (`analysis.strangers.StrangerBook.add`)
        self.on_unknown: Callable[[Event, np.ndarray, float], object] | None = None

    def reset(self) -> None:
        """Forget tracks and cooldowns: replay calls this between unrelated input files."""
        self.tracker.reset()
        self._last_decided.clear()

    def health(self) -> dict[str, Any]:
        return {"frames": self.frames, "liveness_refused": self.liveness_refused}

    def flush(self, t: float) -> list[GateDecision]:
        """Nothing to decide at the end of an input: a face track decides while it is seen."""
        return []

    def recent_frame(self, max_age_s: float = RECENT_FRAME_S) -> np.ndarray | None:
        """The last frame this gate looked at, if it is recent: the snapshot of a door alert
        (forced, held open) raised between two decisions."""
        last = self._last_frame
        if last is None or time.monotonic() - last[0] > max_age_s:
            return None
        return last[1]

    def vote(self, obs: FaceObservation) -> Vote | None:
        """One frame's opinion about one face; None when the face is not usable this frame."""
        if not obs.quality.ok:
            return None
        if obs.too_close:
            return Vote("too_close")
        if not self.analyzer.is_live(obs):
            return Vote("spoof", None, float(obs.p_real_track or obs.p_real or 0.0))
        if obs.embedding is None:  # the analyzer embeds every live face of usable quality
            raise InvariantError(f"{self.cfg.name}: a live face without an embedding")
        if self.cfg.fusion == "fused":  # matched once per decision, on the fused embedding
            return Vote("live", None, float(obs.p_real or 1.0))
        return self.identify(obs.embedding)

    def match_threshold(self) -> float:
        """``thresholds.match``, raised for the gallery's size (decision.size_aware_threshold)."""
        n = self.directory.gallery.owner_count
        if self._threshold[0] != n:
            th = self.cfg.thresholds
            self._threshold = (n, size_aware_threshold(th.match, n, th.stranger_far,
                                                       self.analyzer.embedder.impostor_tail))
        return self._threshold[1]

    def identify(self, embedding: np.ndarray) -> Vote:
        m = self.directory.gallery.match(embedding)
        kind, owner = identify(m, self.match_threshold(), self.cfg.thresholds.margin)
        return Vote(kind, owner, max(m.score, 0.0) if kind == "unknown" else m.score)

    def process(self, image: np.ndarray, t: float) -> list[GateDecision]:
        """Analyse one frame taken at time ``t`` (seconds, any monotonic origin)."""
        self.frames += 1
        self._last_frame = (time.monotonic(), image)
        observations = self.last_observations = self.analyzer.analyze(image)
        tracks = self.tracker.update([o.face.box for o in observations], t)
        self.liveness.keep_only({tr.id for tr in self.tracker.tracks})
        decisions = []
        for obs, track in zip(observations, tracks):
            if obs.p_real is not None:
                obs.p_real_track = self.liveness.fuse(track.id, obs.p_real)
            v = self.vote(obs)
            if v is not None:
                track.votes.append(v)
                if obs.embedding is not None and v.kind != "spoof":
                    track.embeddings.append(obs.embedding)
            d = self._decide(track, image, t)
            if d is not None:
                decisions.append(d)
        return decisions

    def _decide(self, track: Track, image: np.ndarray, t: float) -> GateDecision | None:
        # a recognised person ends the track's decisions; an unknown face may still be
        # recognised later in the same pass (walking closer), and a face refused for liveness
        # (too close, or its first frames doubtful) may still pass on the track's fused p(real)
        if track.outcome not in (None, "unknown", "spoof", "too_close"):
            return None
        c = confirm(track, self.cfg.confirm_frames, self.cfg.fusion, self.identify)
        if c is None:
            return None
        if c.kind in ("unknown", "ambiguous"):
            if track.outcome == "unknown":
                return None
            track.outcome = "unknown"
            d = self._act(
                track, UNKNOWN if c.kind == "unknown" else AMBIGUOUS, None, c.score, image
            )
            if c.kind == "unknown" and self.on_unknown is not None and track.embeddings:
                self.on_unknown(d.event, fuse(list(track.embeddings)), self.match_threshold())
            return d
        if c.kind in ("spoof", "too_close"):
            track.outcome = c.kind
            if not self.liveness.first_refusal(track.id, c.kind):
                return None
            self.liveness_refused += 1
            return self._act(track, SPOOF if c.kind == "spoof" else TOO_CLOSE, None, c.score, image)
        if c.owner is None:
            raise InvariantError(f"{self.cfg.name}: a confirmed match without an owner")
        track.outcome = "match"
        last = self._last_decided.get(c.owner)
        self._last_decided[c.owner] = t
        if last is not None and t - last < self.cfg.cooldown_s:
            return None  # the same person still in front of the camera: one pass, one event
        return self._act(track, self._rules(c.owner), c.owner, c.score, image)

    def _rules(self, owner: OwnerKey) -> Verdict:
        kind, oid = owner
        d = self.directory
        if kind == "watchlist":
            return decide_watchlisted(d.watch[oid]) if oid in d.watch else UNKNOWN
        resident = d.residents.get(oid)
        if resident is None:  # removed since the gallery snapshot was taken
            return UNKNOWN
        verdict = decide_resident(
            resident,
            d.watched_residents.get(oid),
            self.checks,
            self.wall_clock(),
            self.reenroll_after_days,
        )
        if verdict.decision == "granted" and not self.controls.anti_passback_ok(
            self.door.name, oid
        ):
            return ANTI_PASSBACK
        return verdict

    def _act(self, track: Track, verdict: Verdict, owner: OwnerKey | None, score: float,
             image: np.ndarray) -> GateDecision:
        rid = owner[1] if owner and owner[0] == "resident" else None
        wid = owner[1] if owner and owner[0] == "watchlist" else None
        if rid is not None and rid in self.directory.watched_residents:
            wid = self.directory.watched_residents[rid].id
        ev = self.recorder.record(
            self.cfg.name,
            verdict.kind,
            verdict.decision,
            verdict.reason,
            image,
            resident_id=rid,
            watchlist_id=wid,
            score=score,
        )
        if verdict.decision == "granted":
            if rid is None:  # only a resident is ever granted: never open the door for no one
                raise InvariantError(f"{self.cfg.name}: a grant without a resident")
            self.directory.note_seen(rid, ev.ts)
            self.controls.grant(self.door.name, rid)
        name = self.directory.name_of(owner)
        level = logging.WARNING if verdict.decision == "alert" else logging.INFO
        # ids, never names: the journal is kept and shipped, and cannot be erased per person
        who = f"{owner[0]} #{owner[1]}" if owner else "-"
        log.log(
            level,
            "%s: %s %s (%s) score %.3f event %s",
            self.cfg.name,
            verdict.decision,
            who,
            verdict.reason,
            score,
            ev.id,
        )
        return GateDecision(self.cfg.name, verdict.decision, verdict.reason, score,
                            resident=name, event=ev, track=track.id)
