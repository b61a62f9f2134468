"""Access rules: who a confirmed face is allowed to be. Pure functions of records and a time.

Decisions know nothing about pixels: they get an identity that perception already confirmed
and return what should happen and why. Entry checks are a small plug-in point for rules owned
by someone else (the central server's account flag today; fees, time windows later).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gatectl.domain.records import DAY_SECONDS, Resident, WatchEntry

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
