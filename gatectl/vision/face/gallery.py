"""In-memory 1:N face matcher: one normalised float32 matrix, one matrix-vector product per face.

Templates are kept grouped by owner (a resident or a watchlist entry), so "best score of anyone
else" is one masked max over the same score vector. Owners that are the same person (a resident
who is also on the watchlist by photo, two watchlist entries of one face) can be linked into one
*identity*: the runner-up is then the best score of another identity, never of the same face
under another entry. The matrix is replaced copy-on-write and
published by a single reference assignment: the frame loop reads whichever snapshot is current
and is never blocked by an enrollment, a removal or a full reload.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from gatectl.domain.face_match import Match
from gatectl.domain.records import OwnerKey

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
class _Snapshot:
    matrix: np.ndarray  # (N, dim) float32, rows L2-normalised, grouped by owner
    owners: list[OwnerKey]
    starts: np.ndarray  # row range of each owner: [starts[k], ends[k])
    ends: np.ndarray
    row_owner: np.ndarray  # (N,) index into owners
    links: dict[int, tuple[int, ...]]  # owner index -> the other owners of its identity


def _build(owners: list[OwnerKey], counts: np.ndarray, matrix: np.ndarray,
           identities: list[list[OwnerKey]] | None = None) -> _Snapshot:
    ends = np.cumsum(counts)
    index = {o: k for k, o in enumerate(owners)}
    links: dict[int, tuple[int, ...]] = {}
    for group in identities or []:
        members = [index[o] for o in group if o in index]
        for k in members if len(members) > 1 else ():
            links[k] = tuple(m for m in members if m != k)
    return _Snapshot(
        matrix, owners, ends - counts, ends, np.repeat(np.arange(len(owners)), counts), links
    )


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
        matrix = (
            np.concatenate(blocks)[: len(keys)] if blocks else np.zeros((0, self.dim), np.float32)
        )
        del blocks
        index = {o: k for k, o in enumerate(dict.fromkeys(keys))}
        owner_of_row = np.fromiter((index[o] for o in keys), np.int64, len(keys))
        if np.any(owner_of_row[1:] < owner_of_row[:-1]):
            order = np.argsort(owner_of_row, kind="stable")
            matrix, owner_of_row = matrix[order], owner_of_row[order]
        counts = np.bincount(owner_of_row, minlength=len(index))
        self._snap = _build(list(index), counts, self._normalise(np.ascontiguousarray(matrix)))

    def owners(self) -> list[OwnerKey]:
        return list(self._snap.owners)

    def identities(self) -> list[list[OwnerKey]]:
        """The linked groups (owners of one person), as ``link`` was given them."""
        s = self._snap
        return [
            [s.owners[k], *(s.owners[m] for m in ms)] for k, ms in s.links.items() if k < min(ms)
        ]

    def link(self, identities: list[list[OwnerKey]]) -> None:
        """Declare groups of owners that are one person (copy-on-write, replaces earlier links)."""
        s = self._snap
        counts = s.ends - s.starts
        self._snap = _build(s.owners, counts, s.matrix, identities)

    def _rebuild(self, groups: dict[OwnerKey, np.ndarray]) -> None:
        owners = list(groups)
        counts = np.array([len(groups[o]) for o in owners], np.int64)
        matrix = (
            np.concatenate([groups[o] for o in owners])
            if owners
            else np.zeros((0, self.dim), np.float32)
        )
        self._snap = _build(owners, counts, np.ascontiguousarray(matrix), self.identities())

    def vectors(self, owner: OwnerKey) -> np.ndarray:
        """The (normalised) templates of one owner; empty if it has none."""
        s = self._snap
        for k, o in enumerate(s.owners):
            if o == owner:
                return s.matrix[s.starts[k]:s.ends[k]]
        return np.zeros((0, self.dim), np.float32)

    def owners_above(self, query: np.ndarray, threshold: float) -> list[tuple[OwnerKey, float]]:
        """Every owner with a template scoring >= ``threshold``, best first, with its best score:
        the duplicate checks ask this (is this face already here, under which entries)."""
        s = self._snap
        if len(s.matrix) == 0:
            return []
        scores = _scores(s.matrix, query)
        rows = np.flatnonzero(scores >= threshold)
        best: dict[int, float] = {}
        for r in rows:
            k = int(s.row_owner[r])
            best[k] = max(best.get(k, -1.0), float(scores[r]))
        return sorted(((s.owners[k], v) for k, v in best.items()), key=lambda kv: -kv[1])

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
        """Best owner for an L2-normalised query, the best score of any other identity, and the
        scores of the owners linked to the best one (the same person under another entry)."""
        snap = self._snap
        if len(snap.matrix) == 0:
            return Match(None, -1.0, -1.0)
        scores = _scores(snap.matrix, query)
        i = int(np.argmax(scores))
        best = float(scores[i])
        k = int(snap.row_owner[i])
        scores[snap.starts[k]:snap.ends[k]] = -np.inf
        linked = []
        for m in snap.links.get(k, ()):
            if snap.ends[m] > snap.starts[m]:
                linked.append((snap.owners[m], float(scores[snap.starts[m]:snap.ends[m]].max())))
                scores[snap.starts[m]:snap.ends[m]] = -np.inf
        runner = float(scores.max()) if len(snap.owners) > 1 + len(linked) else -1.0
        return Match(snap.owners[k], best, runner, tuple(linked))
