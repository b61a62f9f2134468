"""Access rules: who a confirmed face is allowed to be. Pure functions of records and a time.

Decisions know nothing about pixels: they get an identity that perception already confirmed
and return what should happen and why. Entry checks are a small plug-in point for rules owned
by someone else (the central server's account flag today; fees, time windows later).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol

from gatectl.store import DAY_SECONDS, Resident, WatchEntry
from gatectl.vision.gallery import Match, OwnerKey

REENROLL = "re-enrollment required"


@dataclass(frozen=True)
class Verdict:
    decision: str  # granted | denied | alert
    reason: str
    kind: str  # event kind: access | alert


class EntryCheck(Protocol):
    name: str

    def check(self, resident: Resident, now: float) -> str | None:
        """None to allow, or a short reason to deny."""


class AccountActive:
    """The account flag (status) set by a technician or the central server."""

    name = "account_active"

    def check(self, resident: Resident, now: float) -> str | None:
        return None if resident.status == "active" else f"account {resident.status}"


ENTRY_CHECKS: dict[str, type] = {"account_active": AccountActive}


def make_entry_checks(names: Sequence[str]) -> list[EntryCheck]:
    return [ENTRY_CHECKS[n]() for n in names]


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


def size_aware_threshold(base: float, identities: int, stranger_far: float,
                         impostor_tail: tuple[float, float] | None) -> float:
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


def needs_reenrollment(resident: Resident, now: float, reenroll_after_days: float) -> bool:
    """No entry or exit for the policy period: the template may no longer match the person,
    and the community wants to know the person still lives here."""
    return now - resident.activity_anchor > reenroll_after_days * DAY_SECONDS


def resident_state(resident: Resident, now: float, reenroll_after_days: float) -> str:
    """What `gatectl residents` shows: the stored status, or the derived re-enrollment state."""
    if resident.status == "active" and needs_reenrollment(resident, now, reenroll_after_days):
        return REENROLL
    return resident.status


def decide_resident(resident: Resident, watch: WatchEntry | None, checks: list[EntryCheck],
                    now: float, reenroll_after_days: float) -> Verdict:
    if watch is not None:
        return decide_watchlisted(watch)
    for check in checks:
        reason = check.check(resident, now)
        if reason:
            return Verdict("denied", reason, "access")
    if needs_reenrollment(resident, now, reenroll_after_days):
        return Verdict("denied", REENROLL, "access")
    return Verdict("granted", "resident", "access")


def decide_watchlisted(watch: WatchEntry) -> Verdict:
    """The entry by id and the guard's reason, never the name: event reasons outlive an erasure
    and travel to the centre (the event's watchlist uid says who)."""
    return Verdict(
        "alert",
        f"watchlist #{watch.id}: {watch.reason}" if watch.reason else f"watchlist #{watch.id}",
        "alert",
    )


UNKNOWN = Verdict("denied", "unknown face", "access")
SPOOF = Verdict("denied", "liveness", "access")
# the face fills the frame: too little around it to judge liveness; the person can step back and
# retry
TOO_CLOSE = Verdict("denied", "liveness: too close, step back", "access")
