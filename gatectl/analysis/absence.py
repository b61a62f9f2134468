"""Not seen / not back: care residents with no pass for a while, residents who went out and
have not come back."""

from __future__ import annotations

from gatectl.analysis.base import HOUR, Alert, History
from gatectl.config.analysis import AnalysisConfig


def not_seen(h: History, now: float, cfg: AnalysisConfig) -> list[Alert]:
    """A ``care`` resident whose last pass (their marking, if they never passed) is older than
    ``care.hours``."""
    c = cfg.care
    if not c.enabled:
        return []
    passes = h.passes()
    out = []
    for rid, since in sorted(h.care.items()):
        if rid not in h.last_seen:  # suspended or removed meanwhile
            continue
        stored = h.last_seen[rid]
        seen = [p.ts for p in passes.get(rid, [])] + ([] if stored is None else [stored])
        last = max(seen) if seen else since
        if now - last >= c.hours * HOUR:
            out.append(Alert("not_seen", f"resident #{rid}", now,
                             f"no pass for {(now - last) / HOUR:.0f} h (care)"))
    return out


def not_back(h: History, now: float, cfg: AnalysisConfig) -> list[Alert]:
    """A resident whose last pass is a way out, longer ago than ``not_back.hours``."""
    c = cfg.not_back
    if not c.enabled:
        return []
    out = []
    for rid, passes in sorted(h.passes(c.exit_gates).items()):
        last = passes[-1]
        seen = h.last_seen.get(rid)
        if rid not in h.last_seen or (seen is not None and seen > last.ts):
            continue  # gone, or seen since (a pass older than the history's window)
        if last.exit and now - last.ts >= c.hours * HOUR:
            out.append(Alert("not_back", f"resident #{rid}", now,
                             f"went out at {last.gate} {(now - last.ts) / HOUR:.0f} h ago"))
    return out


RULES = [not_seen, not_back]
