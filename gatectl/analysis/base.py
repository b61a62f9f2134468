"""What every pattern rule is: a pure function of a `History` and the time, returning `Alert`s."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gatectl.config.analysis import AnalysisConfig
from gatectl.domain.records import EventRow

HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class Alert:
    """One finding. ``subject`` names who or what (``resident #3``, ``stranger #7``, a plate),
    ids only: the reason is synced and kept. ``snapshots`` are files of the snapshot folder."""

    rule: str
    subject: str
    ts: float
    detail: str
    snapshots: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """One alert per rule and subject until `AnalysisConfig.repeat_after_h` has passed."""
        return f"{self.rule}:{self.subject}"

    @property
    def reason(self) -> str:
        """The alert event's reason."""
        return f"{self.rule}: {self.subject} {self.detail}"

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "subject": self.subject, "ts": round(self.ts, 3),
                "reason": self.reason, "snapshots": list(self.snapshots)}


@dataclass(frozen=True)
class Pass:
    """A resident's way through: a face grant or a vehicle pass of one of their plates."""

    ts: float
    gate: str
    exit: bool  # the way out (an exit door's gate, a lane's exit)


@dataclass
class History:
    """The part of the store the rules read, loaded once per evaluation (`engine.load`) or built
    by hand in tests: no rule touches the store."""

    since: float
    events: list[EventRow] = field(default_factory=list)
    vehicle_passes: list[dict[str, Any]] = field(default_factory=list)
    vehicles_inside: list[dict[str, Any]] = field(default_factory=list)
    plates: dict[str, int | None] = field(default_factory=dict)  # listed plate -> resident id
    last_seen: dict[int, float | None] = field(default_factory=dict)  # active residents
    care: dict[int, float] = field(default_factory=dict)  # resident -> marked since
    sightings: list[dict[str, Any]] = field(default_factory=list)  # anonymous strangers'

    def passes(self, exit_gates: Sequence[str] = ()) -> dict[int, list[Pass]]:
        """Resident id -> their passes, oldest first."""
        exits = set(exit_gates)
        out: dict[int, list[Pass]] = {}
        for e in self.events:
            if e.kind == "access" and e.decision == "granted" and e.resident_id is not None:
                out.setdefault(e.resident_id, []).append(Pass(e.ts, e.gate, e.gate in exits))
        for p in self.vehicle_passes:
            rid = self.plates.get(p["plate"])
            if rid is not None and p["decision"] == "granted":
                out.setdefault(rid, []).append(
                    Pass(float(p["ts"]), p["lane"], p["direction"] == "exit")
                )
        for v in out.values():
            v.sort(key=lambda p: p.ts)
        return out

    def until(self, t: float, since: float) -> History:
        """The history as it stood at ``t``, from ``since`` on (a replay's step): what happened
        later is cut, a stored last pass later than ``t`` is unknown, and the vehicles inside
        at ``t`` are those inside now that entered by then plus those that left after ``t``
        having entered by then (an exit row carries its time inside). Lists are oldest first."""

        def cut(rows: list, ts: Callable[[Any], float]) -> list:
            keys = [ts(r) for r in rows]
            return rows[bisect_right(keys, since - 1e-9): bisect_right(keys, t)]

        inside = [v for v in self.vehicles_inside if float(v["entered_at"]) <= t]
        inside += [
            {"plate": p["plate"], "entered_at": float(p["ts"]) - float(p["inside_s"]),
             "lane": p["lane"]}
            for p in self.vehicle_passes
            if p["direction"] == "exit" and p["inside_s"] is not None and float(p["ts"]) > t
            and float(p["ts"]) - float(p["inside_s"]) <= t
        ]
        return replace(
            self,
            since=since,
            events=cut(self.events, lambda e: e.ts),
            vehicle_passes=cut(self.vehicle_passes, lambda p: float(p["ts"])),
            vehicles_inside=inside,
            last_seen={r: (s if s is not None and s <= t else None)
                       for r, s in self.last_seen.items()},
            sightings=cut(self.sightings, lambda s: float(s["ts"])),
        )


Rule = Callable[[History, float, AnalysisConfig], list[Alert]]
