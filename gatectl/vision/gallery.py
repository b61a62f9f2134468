"""In-memory 1:N face matcher: one normalised float32 matrix, one matrix-vector product per face.

Templates are kept grouped by owner (a resident or a watchlist entry), so "best score of anyone
else" is one masked max over the same score vector. The matrix is replaced copy-on-write and
published by a single reference assignment: the frame loop reads whichever snapshot is current
and is never blocked by an enrollment, a removal or a full reload.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

OwnerKey = tuple[str, int]  # ("resident" | "watchlist", row id)


@dataclass(frozen=True)
class Match:
    owner: OwnerKey | None
    score: float  # best cosine similarity (-1 if the gallery is empty)
    runner_up: float  # best score of any other owner (-1 if none)

    @property
    def margin(self) -> float:
        return self.score - self.runner_up


@dataclass(frozen=True)
class _Snapshot:
    matrix: np.ndarray  # (N, dim) float32, rows L2-normalised, grouped by owner
    owners: list[OwnerKey]
    starts: np.ndarray  # row range of each owner: [starts[k], ends[k])
    ends: np.ndarray
    row_owner: np.ndarray  # (N,) index into owners


def _build(groups: dict[OwnerKey, np.ndarray], dim: int) -> _Snapshot:
    owners = list(groups)
    mats = [groups[o] for o in owners]
    counts = np.array([len(m) for m in mats], np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    matrix = np.ascontiguousarray(np.concatenate(mats) if mats else np.zeros((0, dim), np.float32))
    row_owner = np.repeat(np.arange(len(owners)), counts)
    return _Snapshot(matrix, owners, starts, ends, row_owner)


class Gallery:
    def __init__(self, dim: int):
        self.dim = dim
        self._groups: dict[OwnerKey, np.ndarray] = {}
        self._snap = _build({}, dim)

    def __len__(self) -> int:
        return len(self._snap.matrix)

    @property
    def owner_count(self) -> int:
        return len(self._snap.owners)

    def _normalised(self, vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def replace_all(self, rows: Iterable[tuple[OwnerKey, np.ndarray]]) -> None:
        groups: dict[OwnerKey, list[np.ndarray]] = {}
        for owner, vec in rows:
            groups.setdefault(owner, []).append(vec)
        self._groups = {o: self._normalised(np.stack(v)) for o, v in groups.items()}
        self._snap = _build(self._groups, self.dim)

    def add(self, owner: OwnerKey, vectors: np.ndarray) -> None:
        groups = dict(self._groups)
        new = self._normalised(vectors)
        groups[owner] = np.concatenate([groups[owner], new]) if owner in groups else new
        self._groups = groups
        self._snap = _build(groups, self.dim)

    def remove(self, owner: OwnerKey) -> None:
        if owner in self._groups:
            groups = dict(self._groups)
            del groups[owner]
            self._groups = groups
            self._snap = _build(groups, self.dim)

    def match(self, query: np.ndarray) -> Match:
        """Best owner for an L2-normalised query, and the best score of anyone else."""
        snap = self._snap
        if len(snap.matrix) == 0:
            return Match(None, -1.0, -1.0)
        scores = snap.matrix @ query
        i = int(np.argmax(scores))
        best = float(scores[i])
        k = int(snap.row_owner[i])
        scores[snap.starts[k]:snap.ends[k]] = -np.inf
        runner = float(scores.max()) if len(snap.owners) > 1 else -1.0
        return Match(snap.owners[k], best, runner)
