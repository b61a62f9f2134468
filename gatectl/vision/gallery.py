"""In-memory 1:N face matcher: one normalised float32 matrix, one matrix-vector product per face.

Templates are kept grouped by owner (a resident or a watchlist entry), so "best score of anyone
else" is one masked max over the same score vector. The matrix is replaced copy-on-write and
published by a single reference assignment: the frame loop reads whichever snapshot is current
and is never blocked by an enrollment, a removal or a full reload.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

OwnerKey = tuple[str, int]  # ("resident" | "watchlist", row id)

# Above this many templates the product is memory-bound (100k x 128 float32 = 51 MB per query):
# two threads halve it (2.7 -> 1.9 ms here). The helper sleeps on a queue between queries,
# unlike BLAS's own pool, which spin-waits on the cores the face models need next.
SPLIT_ROWS = 32_768
_helper: ThreadPoolExecutor | None = None


def _scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    global _helper
    n = len(matrix)
    if n < SPLIT_ROWS:
        return matrix @ query
    if _helper is None:
        _helper = ThreadPoolExecutor(1, thread_name_prefix="gallery")
    out = np.empty(n, np.float32)
    h = n // 2
    upper = _helper.submit(np.dot, matrix[h:], query, out[h:])
    np.dot(matrix[:h], query, out[:h])
    upper.result()
    return out


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


def _build(owners: list[OwnerKey], counts: np.ndarray, matrix: np.ndarray) -> _Snapshot:
    ends = np.cumsum(counts)
    return _Snapshot(matrix, owners, ends - counts, ends, np.repeat(np.arange(len(owners)), counts))


class Gallery:
    def __init__(self, dim: int):
        self.dim = dim
        self._snap = _build([], np.zeros(0, np.int64), np.zeros((0, dim), np.float32))

    def __len__(self) -> int:
        return len(self._snap.matrix)

    @property
    def owner_count(self) -> int:
        return len(self._snap.owners)

    @staticmethod
    def _normalise(m: np.ndarray) -> np.ndarray:
        """In place; einsum avoids the full-size temporary np.linalg.norm would make."""
        m /= np.maximum(np.sqrt(np.einsum("ij,ij->i", m, m)), 1e-12)[:, None]
        return m

    def replace_all(self, rows: Iterable[tuple[OwnerKey, np.ndarray]]) -> None:
        """Load everything at once (start-up, reload). Rows are copied into blocks as they
        stream in, so the source (e.g. SQLite blobs) is released on the way; rows of one owner
        need not be adjacent. Peak memory is about twice the final matrix (51 MB at 100k)."""
        block_rows = 8192
        keys: list[OwnerKey] = []
        blocks: list[np.ndarray] = []
        for owner, vec in rows:
            i = len(keys) % block_rows
            if i == 0:
                blocks.append(np.empty((block_rows, self.dim), np.float32))
            blocks[-1][i] = vec
            keys.append(owner)
        matrix = np.concatenate(blocks)[: len(keys)] if blocks else np.zeros((0, self.dim), np.float32)
        del blocks
        index = {o: k for k, o in enumerate(dict.fromkeys(keys))}
        owner_of_row = np.fromiter((index[o] for o in keys), np.int64, len(keys))
        if np.any(owner_of_row[1:] < owner_of_row[:-1]):
            order = np.argsort(owner_of_row, kind="stable")
            matrix, owner_of_row = matrix[order], owner_of_row[order]
        counts = np.bincount(owner_of_row, minlength=len(index))
        self._snap = _build(list(index), counts, self._normalise(np.ascontiguousarray(matrix)))

    def _rebuild(self, groups: dict[OwnerKey, np.ndarray]) -> None:
        owners = list(groups)
        counts = np.array([len(groups[o]) for o in owners], np.int64)
        matrix = np.concatenate([groups[o] for o in owners]) if owners else np.zeros((0, self.dim), np.float32)
        self._snap = _build(owners, counts, np.ascontiguousarray(matrix))

    def _groups(self) -> dict[OwnerKey, np.ndarray]:
        s = self._snap
        return {o: s.matrix[s.starts[k]:s.ends[k]] for k, o in enumerate(s.owners)}

    def add(self, owner: OwnerKey, vectors: np.ndarray) -> None:
        """Copy-on-write: the current snapshot keeps serving matches until the swap."""
        groups = self._groups()
        new = self._normalise(np.array(vectors, np.float32).reshape(-1, self.dim))
        groups[owner] = np.concatenate([groups[owner], new]) if owner in groups else new
        self._rebuild(groups)

    def remove(self, owner: OwnerKey) -> None:
        groups = self._groups()
        if groups.pop(owner, None) is not None:
            self._rebuild(groups)

    def match(self, query: np.ndarray) -> Match:
        """Best owner for an L2-normalised query, and the best score of anyone else."""
        snap = self._snap
        if len(snap.matrix) == 0:
            return Match(None, -1.0, -1.0)
        scores = _scores(snap.matrix, query)
        i = int(np.argmax(scores))
        best = float(scores[i])
        k = int(snap.row_owner[i])
        scores[snap.starts[k]:snap.ends[k]] = -np.inf
        runner = float(scores.max()) if len(snap.owners) > 1 else -1.0
        return Match(snap.owners[k], best, runner)
