"""The records every floor passes around: who (residents, watchlist entries, owner keys) and
what happened (events). Plain frozen dataclasses with no I/O, so rules are pure functions of them
and the store, the gates, sync and the CLI share one definition."""

from __future__ import annotations

from dataclasses import dataclass

OwnerKey = tuple[str, int]  # ("resident" | "watchlist", row id)

DAY_SECONDS = 86400.0


@dataclass(frozen=True)
class Resident:
    id: int
    uid: str
    name: str
    unit: str
    status: str
    created_at: float
    last_seen_at: float | None
    reactivated_at: float | None

    @property
    def activity_anchor(self) -> float:
        """Start of the current inactivity period: the last pass, enrollment or reactivation."""
        return max(
            t for t in (self.created_at, self.last_seen_at, self.reactivated_at) if t is not None
        )


@dataclass(frozen=True)
class WatchEntry:
    id: int
    uid: str
    name: str
    reason: str
    resident_id: int | None
    created_at: float


@dataclass(frozen=True)
class EventRow:
    id: str
    ts: float
    gate: str
    kind: str
    decision: str | None
    reason: str
    resident_id: int | None
    watchlist_id: int | None
    score: float | None
    snapshot: str | None
    credential: str | None = None


@dataclass(frozen=True)
class Event:
    id: str
    ts: float
    gate: str
    kind: str  # access | alert | camera | system
    decision: str | None  # granted | denied | alert
    reason: str
    resident_id: int | None = None
    watchlist_id: int | None = None
    score: float | None = None
    snapshot: str | None = None  # relative to the snapshot folder
    snapshot_bytes: int = 0
    credential: str | None = None  # what it was decided on: face, card, card+pin, qr, totp
