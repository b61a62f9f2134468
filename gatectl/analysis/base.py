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
    # derived once per history (a replay makes one per step): passes per exit-gate set, and
    # the time keys `until` bisects
    _passes: dict[tuple[str, ...], dict[int, list[Pass]]] = field(
        default_factory=dict, repr=False, compare=False)
    _keys: dict[str, list[float]] = field(default_factory=dict, repr=False, compare=False)

    def passes(self, exit_gates: Sequence[str] = ()) -> dict[int, list[Pass]]:
        """Resident id -> their passes, oldest first."""
        key = tuple(sorted(exit_gates))
        if key not in self._passes:
            self._passes[key] = self._find_passes(set(key))
        return self._passes[key]

    def _find_passes(self, exits: set[str]) -> dict[int, list[Pass]]:
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

        def cut(name: str, rows: list, ts: Callable[[Any], float]) -> list:
            keys = self._keys.get(name)
            if keys is None:
                keys = self._keys[name] = [ts(r) for r in rows]
            return rows[bisect_right(keys, since - 1e-9): bisect_right(keys, t)]

        inside = [v for v in self.vehicles_inside if float(v["entered_at"]) <= t]
        inside += [
            {"plate": p["plate"], "entered_at": float(p["ts"]) - float(p["inside_s"]),
             "lane": p["lane"]}
            for p in self.vehicle_passes
            if p["direction"] == "exit" and p["inside_s"] is not None and float(p["ts"]) > t
            and float(p["ts"]) - float(p["inside_s"]) <= t
        ]
        passes = {}  # the passes already derived here, cut the same way (no pass over the events)
        for key, by_rid in self._passes.items():
            cut_rid = {}
            for rid, lst in by_rid.items():
                ks = self._keys.get(f"passes{key}:{rid}")
                if ks is None:
                    ks = self._keys[f"passes{key}:{rid}"] = [x.ts for x in lst]
                part = lst[bisect_right(ks, since - 1e-9): bisect_right(ks, t)]
                if part:
                    cut_rid[rid] = part
            passes[key] = cut_rid
        return replace(
            self,
            since=since,
            events=cut("events", self.events, lambda e: e.ts),
            vehicle_passes=cut("vehicle_passes", self.vehicle_passes, lambda p: float(p["ts"])),
            vehicles_inside=inside,
            last_seen={r: (s if s is not None and s <= t else None)
                       for r, s in self.last_seen.items()},
            sightings=cut("sightings", self.sightings, lambda s: float(s["ts"])),
            _passes=passes,
            _keys={},
        )


Rule = Callable[[History, float, AnalysisConfig], list[Alert]]
