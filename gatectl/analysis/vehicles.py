"""Vehicle patterns: inside too long, in and out repeatedly, an unknown plate at several lanes."""

from __future__ import annotations

from gatectl.analysis.base import DAY, HOUR, Alert, History
from gatectl.config.analysis import AnalysisConfig


def vehicle_patterns(h: History, now: float, cfg: AnalysisConfig) -> list[Alert]:
    c = cfg.vehicles
    if not c.enabled:
        return []
    out = []
    for v in h.vehicles_inside:
        days = (now - float(v["entered_at"])) / DAY
        if days >= c.inside_days:
            out.append(Alert("vehicle_inside", v["plate"], now,
                             f"inside for {days:.0f} days (entered at {v['lane']})"))
    by_plate: dict[str, list[dict]] = {}
    for p in h.vehicle_passes:
        if p["ts"] <= now:
            by_plate.setdefault(p["plate"], []).append(p)
    for plate, passes in sorted(by_plate.items()):
        ts = sorted(float(p["ts"]) for p in passes)
        window = c.repeat_minutes * 60
        start = 0
        for end in range(len(ts)):  # the most passes within any window
            while ts[end] - ts[start] > window:
                start += 1
            if end - start + 1 >= c.repeat_passes:
                out.append(Alert("vehicle_repeat", plate, now,
                                 f"{end - start + 1} passes within {c.repeat_minutes:g} min"))
                break
        if plate in h.plates:
            continue
        recent = {p["lane"] for p in passes if now - float(p["ts"]) <= c.lanes_hours * HOUR}
        if len(recent) >= c.lanes:
            out.append(Alert("vehicle_lanes", plate, now,
                             f"unknown vehicle at {len(recent)} lanes "
                             f"({', '.join(sorted(recent))}) "
                             f"within {c.lanes_hours:g} h"))
    return out


RULES = [vehicle_patterns]
