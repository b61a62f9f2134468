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

from gatectl.access.kinds import from_code
from gatectl.access.point import AccessPoint
from gatectl.config.gates import FaceGateConfig
from gatectl.config.hardware import DoorConfig
from gatectl.core.errors import InvariantError
from gatectl.core.metrics import DECISIONS
from gatectl.domain.access import (
    SPOOF,
    TOO_CLOSE,
    UNKNOWN,
    Verdict,
    decide_watchlisted,
)
from gatectl.domain.credentials import Presented
from gatectl.domain.face_match import identify, size_aware_threshold
from gatectl.domain.records import Event, OwnerKey
from gatectl.gates.base import Decision, GateView, Mark, box_of, event_json
from gatectl.gates.face.tracker import FaceTracker, Track, Vote, confirm, fuse
from gatectl.people.directory import Directory
from gatectl.store.recorder import EventRecorder
from gatectl.vision.face.analyzer import FaceAnalyzer, FaceObservation
from gatectl.vision.face.detect import FrameFaces
from gatectl.vision.face.liveness import TrackLiveness
from gatectl.vision.qr import QrReader

log = logging.getLogger("gatectl.face_gate")

AMBIGUOUS = Verdict("denied", "ambiguous match", "access")
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


@dataclass(frozen=True)
class CodeDecision(Decision):
    """A QR code read at the door: a visitor pass or a resident's code, and its event."""

    event: Event
    credential: str

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), "credential": self.credential, **event_json(self.event)}


class FaceGate:
    def __init__(self, cfg: FaceGateConfig, door: DoorConfig, analyzer: FaceAnalyzer,
                 directory: Directory, recorder: EventRecorder, access: AccessPoint,
                 qr: QrReader | None = None, qr_every: int = 3, qr_repeat_s: float = 5.0):
        """``access``: the door's decision path (every resident match goes through it);
        ``qr``: the code reader run on one frame in ``qr_every`` (None: no QR codes here)."""
        self.cfg = cfg
        self.door = door
        self.analyzer = analyzer
        self.directory = directory
        self.recorder = recorder
        self.access = access
        self.qr = qr
        self.qr_every = qr_every
        self.qr_repeat_s = qr_repeat_s
        self.qr_ignored = 0  # codes that are not ours (a parcel label)
        self._codes_seen: dict[str, float] = {}
        self.tracker = FaceTracker(cfg.confirm_window, timeout_s=cfg.track_timeout_s)
        self._last_decided: dict[OwnerKey, float] = {}  # cooldown: owner -> frame time
        self.liveness = TrackLiveness(cfg.confirm_window)
        self.liveness_refused = 0  # passes refused for liveness (spoof or too close), for metrics
        # (identities, match threshold)
        self._threshold: tuple[int, float] = (-1, cfg.thresholds.match)
        self.frames = 0
        self.last_observations: list[FaceObservation] = []
        self._last_frame: tuple[float, np.ndarray] | None = None  # (monotonic time, image)
        self._seen: tuple[float, np.ndarray, list[tuple[FaceObservation, Track]]] | None = None
        # an unknown face's event, fused embedding and the match threshold, for the
        # repeated-stranger rule (`analysis.strangers.StrangerBook.add`)
        self.on_unknown: Callable[[Event, np.ndarray, float], object] | None = None

    def reset(self) -> None:
        """Forget tracks and cooldowns: replay calls this between unrelated input files."""
        self.tracker.reset()
        self._last_decided.clear()

    def health(self) -> dict[str, Any]:
        return {"frames": self.frames, "liveness_refused": self.liveness_refused,
                "qr_ignored": self.qr_ignored}

    def flush(self, t: float) -> list[GateDecision]:
        """Nothing to decide at the end of an input: a face track decides while it is seen."""
        return []

    def frame_faces(self) -> FrameFaces | None:
        """The faces YuNet found in the last frame, down to the floor its detector keeps (the
        tailgate watch on this camera takes them rather than run YuNet again)."""
        return self.analyzer.detector.shared

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

    def process(self, image: np.ndarray, t: float) -> list[Decision]:
        """Analyse one frame taken at time ``t`` (seconds, any monotonic origin)."""
        self.frames += 1
        self._last_frame = seen_at = (time.monotonic(), image)
        decisions = self._codes(image, t) if (self.frames - 1) % self.qr_every == 0 else []
        observations = self.last_observations = self.analyzer.analyze(image)
        tracks = self.tracker.update([o.face.box for o in observations], t)
        self.liveness.keep_only({tr.id for tr in self.tracker.tracks})
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
        self._seen = (seen_at[0], image, list(zip(observations, tracks)))
        return decisions

    def view(self) -> GateView | None:
        """The last frame with its faces: the resident's or watchlist entry's name once the
        track was recognised, else "unknown" (or why liveness refused it)."""
        seen = self._seen
        if seen is None:
            return None
        t, image, faces = seen
        marks = []
        for obs, track in faces:
            name = self.directory.name_of(track.owner)
            label = name or {"spoof": "spoof?", "too_close": "too close"}.get(
                str(track.outcome), "unknown")
            what = "face_known" if name else "face_unknown"
            marks.append(Mark(box_of(obs.face.box), label, what))
        return GateView(image, t, tuple(marks))

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
        track.outcome, track.owner = "match", c.owner
        last = self._last_decided.get(c.owner)
        self._last_decided[c.owner] = t
        if last is not None and t - last < self.cfg.cooldown_s:
            return None  # the same person still in front of the camera: one pass, one event
        kind, oid = c.owner
        if kind == "watchlist":
            w = self.directory.watch.get(oid)
            return self._act(track, decide_watchlisted(w) if w else UNKNOWN, c.owner, c.score,
                             image)
        if oid not in self.directory.residents:  # removed since the gallery snapshot was taken
            return self._act(track, UNKNOWN, c.owner, c.score, image)
        # a resident: the door's one decision path, the same as a card's or a code's
        out = self.access.present(
            Presented(kind="face", door=self.door.name, source=self.cfg.name, value="", t=t,
                      resident_id=oid),
            image=image, score=c.score)
        if out.event is None:  # a first factor (face+card): the door waits for the other
            return None
        return GateDecision(self.cfg.name, out.decision, out.reason, c.score,
                            resident=self.directory.name_of(c.owner), event=out.event,
                            track=track.id)

    def _codes(self, image: np.ndarray, t: float) -> list[Decision]:
        """QR codes in this frame: a visitor pass or a resident's code, each shown once per
        ``access.qr.repeat_s`` (a code held up to the camera is in many frames)."""
        if self.qr is None:
            return []
        out: list[Decision] = []
        self._codes_seen = {c: s for c, s in self._codes_seen.items() if t - s < self.qr_repeat_s}
        for text in self.qr.read(image):
            if text in self._codes_seen:
                continue
            self._codes_seen[text] = t
            p = from_code(text, self.door.name, self.cfg.name, t)
            if p is None:
                self.qr_ignored += 1
                continue
            o = self.access.present(p, image=image)
            if o.event is not None:
                out.append(CodeDecision(self.cfg.name, o.decision, o.reason, None, event=o.event,
                                        credential=p.kind))
        return out

    def _act(self, track: Track, verdict: Verdict, owner: OwnerKey | None, score: float,
             image: np.ndarray) -> GateDecision:
        """Record a refusal or an alert the gate decides itself (no one it may let in)."""
        if verdict.decision == "granted":  # residents pass through the access point only
            raise InvariantError(f"{self.cfg.name}: a grant outside the door's access point")
        DECISIONS.labels("face", verdict.decision).inc()
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
            credential="face",
        )
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
