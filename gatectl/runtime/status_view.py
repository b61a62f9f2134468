"""The running daemon as the status page sees it (`gatectl.web.view.StatusView`): the runner's
health collector with the sync client and the board's CPU and temperature added, the gates'
last frames per camera, and the recent events read through a connection of the page's own (a
page refresh never waits on, or delays, a door's event write)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatectl.domain.records import EventRow
from gatectl.gates.base import Gate, GateView, Viewable
from gatectl.runtime.app import App
from gatectl.runtime.health import TOP_LEVEL, HealthCollector
from gatectl.store import Store
from gatectl.store.db import StoreError

if TYPE_CHECKING:  # the MQTT and web stacks load only when configured
    from gatectl.sync.client import SyncClient
    from gatectl.web.status import StatusServer

log = logging.getLogger("gatectl.run")

THERMAL = Path("/sys/class/thermal")
RECENT_EVENTS = 200  # the events whose snapshots the page may fetch


class DeviceHealth:
    """The machine's own load: CPU use since the last reading (from /proc/stat) and every
    thermal zone /sys/class/thermal reports, in degrees Celsius."""

    def __init__(self, thermal: Path = THERMAL):
        self.thermal = thermal
        self._last: tuple[int, int] | None = None  # (busy, total) jiffies
        self._lock = threading.Lock()

    def health(self) -> dict[str, Any]:
        return {"cpu_percent": self._cpu(), "temperature_c": self._temperatures(),
                "load_1m": round(os.getloadavg()[0], 2)}

    def _cpu(self) -> float | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return None
        total, idle = sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)
        with self._lock:
            last, self._last = self._last, (total - idle, total)
        if last is None or total <= last[1]:
            return None
        return round(100 * (total - idle - last[0]) / (total - last[1]), 1)

    def _temperatures(self) -> dict[str, float]:
        out = {}
        for zone in sorted(self.thermal.glob("thermal_zone*"))[:16]:
            try:
                kind = (zone / "type").read_text()[:32].strip() or zone.name
                out[kind] = round(int((zone / "temp").read_text()[:16]) / 1000, 1)
            except (OSError, ValueError):
                continue  # a zone without a sensor reading (common on VMs)
        return out


class RunnerView:
    """`StatusView` over a run: its App, its health collector and its gates (a callable, so a
    gate the supervisor rebuilt is the one shown)."""

    def __init__(self, app: App, collector: Callable[[], HealthCollector],
                 gates: Callable[[], list[Gate]], sync: SyncClient | None):
        """``collector``: the runner's (a fresh one per reading, as `Runner.health` does: the
        supervisor may have replaced a worker since)."""
        self.app = app
        self.collector = collector
        self.gates = gates
        self.sync = sync
        self.device = DeviceHealth()
        self.store = Store(app.store.path, clock=app.clock)

    def health(self) -> dict[str, Any]:
        c = self.collector()
        c.add(TOP_LEVEL, self.device)
        if self.sync is not None:
            c.add("sync", self.sync)
        return c.collect()

    def cameras(self) -> list[str]:
        return list(dict.fromkeys(g.cfg.camera for g in self.gates()))

    def frame(self, camera: str) -> GateView | None:
        """The newest frame among the camera's gates, with every gate's marks on it."""
        views = [v for g in self.gates() if g.cfg.camera == camera
                 and isinstance(g, Viewable) and (v := g.view()) is not None]
        if not views:
            return None
        newest = max(views, key=lambda v: v.t)
        marks = tuple(m for v in views for m in v.marks)
        region = next((v.region for v in views if v.region), ())
        return GateView(newest.image, newest.t, marks, region)

    def states(self) -> dict[str, str]:
        return self.app.controls.health()

    def events(self, limit: int) -> list[EventRow]:
        try:
            return self.store.events(limit=limit)[::-1]
        except StoreError:
            return []  # the page shows none; the health says why the store fails

    def snapshot(self, event_id: str) -> Path | None:
        row = next((e for e in self.events(RECENT_EVENTS) if e.id == event_id), None)
        return self.app.snapshot_dir / row.snapshot if row is not None and row.snapshot else None

    def announcement(self) -> str | None:
        try:
            current = self.store.announcements()
        except StoreError:
            return None
        return current[0]["text"] if current else None

    def close(self) -> None:
        self.store.close()


def start_status(app: App, collector: Callable[[], HealthCollector],
                 gates: Callable[[], list[Gate]], sync: SyncClient | None) -> StatusServer | None:
    """The status page of a run when ``[status]`` enables it. Never raises: a page that cannot
    start (port in use, bad certificate, its store connection) is one error line, and the doors
    run without it."""
    if not app.cfg.status.enabled:
        return None
    from gatectl.web.server import ServeError  # starlette only when enabled
    from gatectl.web.status import StatusServer

    try:
        view = RunnerView(app, collector, gates, sync)
    except StoreError as exc:
        log.error("status page not served: %s", exc)
        return None
    server = StatusServer(app.cfg.status, view, on_stop=view.close)
    try:
        server.start()
    except ServeError as exc:
        server.stop()
        log.error("status page not served: %s", exc)
        return None
    return server
