"""Repeated strangers: unknown faces clustered into anonymous ids, and the rule that alerts on
one seen too often.

The face gate hands each unknown face's fused embedding to `StrangerBook.add` after recording
its ``unknown face`` event. A face joins the stranger of the most similar face kept from the
last ``window_days`` when the cosine similarity reaches the face gate's match threshold (the
same rule that recognises a resident, `domain.face_match`); a face seen once gets no id and is
deleted after ``window_days``; a stranger and their embeddings go ``expire_days`` after their
last sighting (`StrangerBook.expire`).
"""

from __future__ import annotations

import logging

import numpy as np

from gatectl.analysis.base import DAY, Alert, History
from gatectl.config.analysis import AnalysisConfig, StrangersRule
from gatectl.domain.records import Event
from gatectl.store import Store
from gatectl.store.db import StoreError

log = logging.getLogger("gatectl.analysis")

MAX_SNAPSHOTS = 8  # named in one alert


def nearest(embedding: np.ndarray, faces: list[tuple[int, int | None, np.ndarray]],
            threshold: float) -> int | None:
    """The row of the kept face most similar to ``embedding`` if it reaches ``threshold``."""
    if not faces:
        return None
    scores = np.stack([f[2] for f in faces]) @ np.asarray(embedding, np.float32)
    best = int(np.argmax(scores))
    return faces[best][0] if float(scores[best]) >= threshold else None


class StrangerBook:
    """The store side of the clustering, called from the face gate's worker."""

    def __init__(self, store: Store, cfg: StrangersRule):
        self.store = store
        self.cfg = cfg

    def add(self, event: Event, embedding: np.ndarray, gate_threshold: float) -> int | None:
        """Keep an unknown face; its stranger id, or None for a first sighting. A store problem
        is logged, never raised: the gate has decided already."""
        if not self.cfg.enabled:
            return None
        th = self.cfg.threshold if self.cfg.threshold is not None else gate_threshold
        vec = np.asarray(embedding, np.float32)
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(norm) or norm < 1e-6:
            return None
        try:
            faces = self.store.unknown_faces(
                event.ts - self.cfg.window_days * DAY, self.cfg.max_faces
            )
            same = nearest(vec / norm, faces, th)
            return self.store.add_unknown_face(event.ts, event.gate, event.id, vec / norm, same)
        except StoreError as exc:
            log.error("unknown face of event %s not kept for the stranger rule: %s", event.id, exc)
            return None

    def expire(self, now: float) -> int:
        c = self.cfg
        return self.store.expire_unknown_faces(
            now, c.window_days * DAY, c.expire_days * DAY, c.max_faces
        )


def repeated_strangers(h: History, now: float, cfg: AnalysisConfig) -> list[Alert]:
    """A stranger seen ``times`` times or more within the last ``days`` days."""
    c = cfg.strangers
    if not c.enabled:
        return []
    since = now - c.days * DAY
    seen: dict[int, list[dict]] = {}
    for s in h.sightings:
        if since <= s["ts"] <= now:
            seen.setdefault(int(s["stranger"]), []).append(s)
    out = []
    for sid, rows in sorted(seen.items()):
        if len(rows) < c.times:
            continue
        snaps = tuple(r["snapshot"] for r in rows if r["snapshot"])[-MAX_SNAPSHOTS:]
        gates = sorted({r["gate"] for r in rows})
        out.append(Alert(
            "repeated_stranger", f"stranger #{sid}", now,
            f"seen {len(rows)} times in {c.days:g} days at {', '.join(gates)}", snaps))
    return out


RULES = [repeated_strangers]
