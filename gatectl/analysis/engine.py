"""The rules' edges: the history loaded from the store, every registered rule run over it, and
their alerts recorded (the runner, on ``analysis.every_s``) or only returned (`gatectl analyse`).

A rule finds the same thing on every run while it stays true, so an alert is recorded once per
rule and subject within ``analysis.repeat_after_h`` (the keys in ``analysis_raised``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from gatectl.analysis.base import DAY, HOUR, Alert, History
from gatectl.analysis.registry import rules
from gatectl.analysis.strangers import StrangerBook
from gatectl.config.analysis import AnalysisConfig
from gatectl.store import Store
from gatectl.store.recorder import EventRecorder

log = logging.getLogger("gatectl.analysis")

SOURCE = "analysis"  # the alert events' gate
MAX_EVENTS = 500_000  # read at most this many events of the window (a device, not a site)


def window_days(cfg: AnalysisConfig) -> float:
    """How far back the rules look: the longest of their windows."""
    return max(cfg.strangers.days, cfg.night.days, cfg.care.hours / 24,
               cfg.not_back.hours / 24 + 1, cfg.vehicles.lanes_hours / 24,
               cfg.vehicles.repeat_minutes / 1440)


def load(store: Store, since: float) -> History:
    """The store's history from ``since`` on, as the rules read it."""
    plates: dict[str, int | None] = {}
    for p in store.plates():
        rid = p["resident_id"] if p["list"] == "resident" else None
        plates[p["plate"]] = plates.get(p["plate"]) or rid
    return History(
        since=since,
        events=[e for e in store.events(since=since, kind="access", limit=MAX_EVENTS)],
        vehicle_passes=store.vehicle_passes(since=since, limit=MAX_EVENTS),
        vehicles_inside=store.vehicles_inside(),
        plates=plates,
        last_seen={r.id: r.last_seen_at for r in store.residents() if r.status == "active"},
        care=store.care(),
        sightings=store.stranger_sightings(since),
    )


def evaluate(history: History, now: float, cfg: AnalysisConfig) -> list[Alert]:
    """Every registered rule over ``history`` at ``now``: pure."""
    out: list[Alert] = []
    for rule in rules():
        out += rule(history, now, cfg)
    return out


MAX_STEPS = 10_000  # of one replay


def replay(history: History, since: float, now: float, step: float,
           cfg: AnalysisConfig) -> list[Alert]:
    """What the rules would have raised had they run every ``step`` seconds from ``since`` to
    ``now`` (the last step at ``now``), each rule and subject at most once per
    ``repeat_after_h``, as the scheduled runs record them: pure."""
    if step <= 0 or (now - since) / step > MAX_STEPS:
        raise ValueError(f"a replay takes 1 to {MAX_STEPS} steps")
    window = window_days(cfg) * DAY
    repeat = cfg.repeat_after_h * HOUR
    history.passes()  # derived once here, then cut per step
    history.passes(cfg.not_back.exit_gates)
    last: dict[str, float] = {}
    out = []
    times = [since + step * (i + 1) for i in range(int((now - since) // step))]
    for t in [x for x in times if x < now] + [now]:
        for a in evaluate(history.until(t, max(history.since, t - window)), t, cfg):
            if a.key not in last or t - last[a.key] >= repeat:
                last[a.key] = t
                out.append(a)
    return out


class Analyst:
    """Runs the rules over a store and records their new alerts (synced like every event)."""

    def __init__(self, cfg: AnalysisConfig, store: Store, recorder: EventRecorder,
                 snapshot_dir: Path, strangers: StrangerBook, clock: Callable[[], float]):
        self.cfg = cfg
        self.store = store
        self.recorder = recorder
        self.snapshot_dir = snapshot_dir
        self.strangers = strangers
        self.clock = clock
        self.runs = 0
        self.raised = 0

    def findings(self, since: float | None = None) -> list[Alert]:
        """What the rules find now over the history since ``since`` (default: their window)."""
        now = self.clock()
        start = now - window_days(self.cfg) * DAY if since is None else since
        return evaluate(load(self.store, start), now, self.cfg)

    def replay(self, since: float, step: float) -> list[Alert]:
        """What the rules would have raised from ``since`` to now, run every ``step`` seconds
        (`replay`); each step sees the rules' window of history before it."""
        now = self.clock()
        history = load(self.store, since - window_days(self.cfg) * DAY)
        return replay(history, since, now, step, self.cfg)

    def run(self) -> list[Alert]:
        """One scheduled evaluation: expire what privacy says must go, then record the alerts
        not raised within ``repeat_after_h``. Returns the recorded ones."""
        now = self.clock()
        self.runs += 1
        self.strangers.expire(now)
        found = {a.key: a for a in self.findings()}
        repeat = self.cfg.repeat_after_h * HOUR
        old = self.store.raised_since(list(found), now - repeat)
        new = [a for k, a in found.items() if k not in old]
        for a in new:
            # the rule only: a subject may be a plate (personal data); the event has the rest
            log.warning("analysis: a %s alert raised", a.rule)
            self.recorder.record(SOURCE, "alert", "alert", _with_files(a), self._image(a))
        self.store.note_raised([a.key for a in new], now, now - repeat)
        self.raised += len(new)
        return new

    def _image(self, a: Alert) -> np.ndarray | None:
        """The alert's own snapshot: the newest of the snapshots it names that still exists."""
        for rel in reversed(a.snapshots):
            img = cv2.imread(str(self.snapshot_dir / rel))
            if img is not None:
                return img
        return None

    def health(self) -> dict[str, int]:
        return {"runs": self.runs, "raised": self.raised}


def _with_files(a: Alert) -> str:
    return a.reason + (f"; snapshots: {', '.join(a.snapshots)}" if a.snapshots else "")
