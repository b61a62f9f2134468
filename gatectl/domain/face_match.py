"""The face match rule: who a face is from its 1:N match, for the gates and for enrollment.

One module so the gate's decision (`identify`: threshold, margin over the best other identity,
watchlist first) and enrollment's duplicate refusal (`duplicate_of`) read the same `Match` the
same way; the threshold that grows with the gallery lives here too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from gatectl.domain.records import OwnerKey


@dataclass(frozen=True)
class Match:
    owner: OwnerKey | None
    score: float  # best cosine similarity (-1 if the gallery is empty)
    runner_up: float  # best score of any other identity (-1 if none)
    # the best identity's other owners, their best score
    linked: tuple[tuple[OwnerKey, float], ...] = ()

    @property
    def margin(self) -> float:
        return self.score - self.runner_up


def identify(m: Match, match: float, margin: float) -> tuple[str, OwnerKey | None]:
    """Who a face is, from its 1:N match: ("match", owner), ("unknown", None) when no one is
    close enough, or ("ambiguous", None) when another identity is within ``margin`` (the usual
    false accept in the field is a stranger close to two people). The same face under a
    watchlist entry wins over its resident entry, so a watchlisted resident is never granted."""
    if m.owner is None or m.score < match:
        return "unknown", None
    if m.margin < margin:
        return "ambiguous", None
    watched = [(s, o) for o, s in m.linked if o[0] == "watchlist"]
    if m.owner[0] == "watchlist" or not watched:
        return "match", m.owner
    return "match", max(watched)[1]


def size_aware_threshold(
    base: float, identities: int, stranger_far: float, impostor_tail: tuple[float, float] | None
) -> float:
    """The match threshold for a gallery of ``identities`` people. A stranger is compared with
    everyone enrolled, so the chance that *someone* resembles them grows with the gallery:
    1 - (1 - p)^N for a per-identity chance p. This raises the threshold until that stays
    within ``stranger_far``, using the embedder's measured impostor tail (mean, sigma of a
    normal fitted to the upper tail of per-identity stranger scores); never below ``base``."""
    if stranger_far <= 0 or impostor_tail is None or identities < 1:
        return base
    p = -math.expm1(math.log1p(-stranger_far) / identities)
    mu, sigma = impostor_tail
    return max(base, mu - sigma * NormalDist().inv_cdf(p))


def duplicate_of(
    m: Match, threshold: float, same: OwnerKey | None = None
) -> tuple[OwnerKey | None, float] | None:
    """Enrollment's rule on the same `Match`: the face already belongs to someone else when the
    best owner other than ``same`` scores ``threshold`` or more. Returns (that owner, score) -
    owner None when it is the runner-up of ``same`` (another identity close to the person being
    given photos) - or None when the face is no one else's."""
    if m.owner is None:
        return None
    if m.owner == same:
        return (None, m.runner_up) if m.runner_up >= threshold else None
    return (m.owner, m.score) if m.score >= threshold else None


def same_person(
    templates: Sequence[np.ndarray], query: np.ndarray, threshold: float
) -> tuple[bool, float]:
    """Enrollment's rule for photos that must show one person (several photos of a new
    resident; new photos against a resident's templates): the best cosine similarity of
    ``query`` to any of ``templates`` (unit vectors), and whether it reaches ``threshold``."""
    best = float(np.max(np.stack(list(templates)) @ query))
    return best >= threshold, best
