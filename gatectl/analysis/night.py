"""Night pattern: a resident or an anonymous stranger whose passes fall mostly in the night."""

from __future__ import annotations

from gatectl.analysis.base import DAY, HOUR, Alert, History
from gatectl.config.analysis import AnalysisConfig, NightRule


def at_night(ts: float, c: NightRule) -> bool:
    """Whether wall time ``ts`` is in the night window (local hours; it may span midnight)."""
    hour = ((ts + c.utc_offset_h * HOUR) % DAY) / HOUR
    if c.start_hour <= c.end_hour:
        return c.start_hour <= hour < c.end_hour
    return hour >= c.start_hour or hour < c.end_hour


def night_pattern(h: History, now: float, cfg: AnalysisConfig) -> list[Alert]:
    c = cfg.night
    if not c.enabled:
        return []
    since = now - c.days * DAY
    times: dict[str, list[float]] = {}
    for rid, passes in h.passes().items():
        times[f"resident #{rid}"] = [p.ts for p in passes if since <= p.ts <= now]
    for s in h.sightings:
        if since <= s["ts"] <= now:
            times.setdefault(f"stranger #{s['stranger']}", []).append(float(s["ts"]))
    out = []
    for who, ts in times.items():
        if len(ts) < c.min_passes:
            continue
        night = sum(at_night(t, c) for t in ts)
        if night / len(ts) >= c.fraction:
            out.append(Alert("night_pattern", who, now,
                             f"{night} of {len(ts)} passes at night in {c.days:g} days"))
    return out


RULES = [night_pattern]
