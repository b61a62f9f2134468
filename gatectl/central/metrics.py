"""Health and Prometheus metrics of the centre, read from its database so they cover every
worker process (each saves its counters there) and survive their restarts.

    gatectl_central_events_total               events stored (all workers)
    gatectl_central_ingest_events_per_second   events received over the last minute / 60
    gatectl_central_device_lag_seconds{site,device}   receive time - event time, newest event
    gatectl_central_devices_offline            devices whose status is offline or silent
    gatectl_central_unacknowledged_events      outbox rows the devices report not yet receipted
    gatectl_central_worker_counter{worker,name}  malformed per topic, duplicates, requests ...
    gatectl_central_alerts_total               alerts raised (offline, silent)

A device silent for ``http.offline_after_s`` is marked ``silent`` and alerted like one whose
Last Will said offline (`check_silent`, run by `serve` every few seconds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gatectl.central.storage import Database, StorageError

log = logging.getLogger("gatectl.central")


def check_silent(db: Database, after_s: float, now: float) -> int:
    """Devices online but silent for ``after_s``: marked ``silent``, one alert each."""
    with db.write() as tx:
        rows = tx.execute(
            "SELECT site, device FROM devices WHERE state NOT IN ('offline', 'silent') "
            "AND last_seen IS NOT NULL AND last_seen < ?", [now - after_s])
        for site, device in rows:
            tx.execute("UPDATE devices SET state = 'silent', state_at = ? WHERE site = ? AND "
                       "device = ?", [now, site, device])
            tx.execute("INSERT INTO alerts (site, device, kind, at, detail) VALUES "
                       "(?, ?, 'silent', ?, ?)", [site, device, now, f"nothing for {after_s:g} s"])
            log.warning("ALERT device %s/%s silent for %.0f s", site, device, after_s)
    return len(rows)


def render(db: Database, now: float) -> bytes:
    """The metrics text, on a registry of its own (never the process-global one)."""
    reg = CollectorRegistry()
    total = Gauge("gatectl_central_events_total", "Events stored.", registry=reg)
    rate = Gauge("gatectl_central_ingest_events_per_second",
                 "Events received over the last minute, per second.", registry=reg)
    lag = Gauge("gatectl_central_device_lag_seconds",
                "Receive time minus event time of the newest event.", ["site", "device"],
                registry=reg)
    offline = Gauge("gatectl_central_devices_offline", "Devices offline or silent.",
                    registry=reg)
    pending = Gauge("gatectl_central_unacknowledged_events",
                    "Outbox rows the devices report as not yet confirmed.", registry=reg)
    alerts = Gauge("gatectl_central_alerts_total", "Alerts raised.", registry=reg)
    worker = Gauge("gatectl_central_worker_counter", "Each worker's counters.",
                   ["worker", "name"], registry=reg)
    total.set(db.query("SELECT count(*) FROM events")[0][0])
    rate.set(db.query("SELECT count(*) FROM events WHERE received_at >= ?",
                      [now - 60])[0][0] / 60)
    for site, device, lag_s, state, pend in db.query(
            "SELECT site, device, lag_s, state, pending FROM devices"):
        if lag_s is not None:
            lag.labels(site, device).set(lag_s)
    offline.set(db.query(
        "SELECT count(*) FROM devices WHERE state IN ('offline', 'silent')")[0][0])
    pending.set(db.query("SELECT coalesce(sum(pending), 0) FROM devices")[0][0])
    alerts.set(db.query("SELECT count(*) FROM alerts")[0][0])
    for w, name, value in db.query("SELECT worker, name, value FROM counters"):
        worker.labels(w, name).set(value)
    return generate_latest(reg)


def http_app(db: Database, workers: Callable[[], dict], clock: Callable[[], float] = time.time
             ) -> Starlette:
    """/health (200 when the database answers and every worker runs, else 503) and /metrics."""

    def health(request: Request) -> Response:
        body: dict = {"workers": workers()}
        try:
            db.query("SELECT 1")
            body["database"] = "ok"
        except StorageError as exc:
            body["database"] = str(exc)
        body["ok"] = body["database"] == "ok" and all(
            w.get("alive") for w in body["workers"].values())
        return JSONResponse(body, status_code=200 if body["ok"] else 503)

    def metrics(request: Request) -> Response:
        try:
            return Response(render(db, clock()), media_type=CONTENT_TYPE_LATEST)
        except StorageError as exc:
            return Response(f"# {exc}\n", status_code=503, media_type="text/plain")

    return Starlette(routes=[Route("/health", health), Route("/metrics", metrics)])
