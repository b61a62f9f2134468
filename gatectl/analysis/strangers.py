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
import threading

import numpy as np

from gatectl.analysis.base import DAY, Alert, History
from gatectl.config.analysis import AnalysisConfig, StrangersRule
from gatectl.domain.records import Event
from gatectl.store import Store
from gatectl.store.db import StoreError

log = logging.getLogger("gatectl.analysis")

MAX_SNAPSHOTS = 8  # named in one alert


def nearest(embedding: np.ndarray, rows: np.ndarray, vectors: np.ndarray,
            threshold: float) -> int | None:
    """The row of the kept face most similar to ``embedding`` if it reaches ``threshold``."""
    if len(rows) == 0:
        return None
    scores = vectors @ np.asarray(embedding, np.float32)
    best = int(np.argmax(scores))
    return int(rows[best]) if float(scores[best]) >= threshold else None


class _Faces:
    """The window's unknown faces in memory, oldest first: rows, times and a vector buffer that
    grows by doubling, so adding a face copies nothing."""

    def __init__(self, faces: list[tuple[int, float, np.ndarray]]):
        faces = sorted(faces, key=lambda f: f[1])
        self.rows = np.array([f[0] for f in faces], np.int64)
        self.ts = np.array([f[1] for f in faces], np.float64)
        dim = len(faces[0][2]) if faces else 0
        self.buf = np.zeros((max(len(faces), 64), dim), np.float32)
        if faces:
            self.buf[: len(faces)] = np.stack([f[2] for f in faces])

    def window(self, since: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """The newest ``limit`` faces seen since ``since``."""
        start = max(int(np.searchsorted(self.ts, since)), len(self.rows) - limit)
        return self.rows[start:], self.buf[start : len(self.rows)]

    def append(self, row: int, ts: float, vec: np.ndarray) -> None:
        n = len(self.rows)
        if n == 0:  # the first face gives the width
            self.buf = np.zeros((64, len(vec)), np.float32)
        if self.buf.shape[1] != len(vec):  # another embedder's face: not comparable
            return
        if n == len(self.buf):
            grown = np.zeros((2 * n, self.buf.shape[1]), np.float32)
            grown[:n] = self.buf
            self.buf = grown
        self.buf[n] = vec
        self.rows = np.append(self.rows, row)
        self.ts = np.append(self.ts, ts)


class StrangerBook:
    """The store side of the clustering, called from the face gate's worker. The faces of the
    window are also kept in memory (read at the first face and after each expiry), so an
    unknown face costs one matrix product and one insert, not a read of every embedding."""

    def __init__(self, store: Store, cfg: StrangersRule, wait_s: float | None = None):
        self.store = store
        self.cfg = cfg
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._faces: _Faces | None = None

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
        vec = vec / norm
        since = event.ts - self.cfg.window_days * DAY
        try:
            with self._lock:
                if self._faces is None:
                    self._faces = _Faces(self.store.unknown_faces(since, self.cfg.max_faces))
                rows, vectors = self._faces.window(since, self.cfg.max_faces)
                same = nearest(vec, rows, vectors, th) if vectors.shape[1:] == vec.shape else None
                row, stranger = self.store.add_unknown_face(
                    event.ts, event.gate, event.id, vec, same, self.wait_s)
                self._faces.append(row, event.ts, vec)
                return stranger
        except StoreError as exc:
            log.error("unknown face of event %s not kept for the stranger rule: %s", event.id, exc)
            return None

    def expire(self, now: float) -> int:
        """Privacy: delete what the window and the expiry say must go (the store), and forget
        the faces kept in memory (read again at the next face)."""
        c = self.cfg
        with self._lock:
            self._faces = None
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
