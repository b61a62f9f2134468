"""Every Prometheus metric of gatectl, in one place: the counters and histograms the code bumps
where things happen (one short line each), and the health-derived ones read at scrape time.

The metrics live in their own `REGISTRY`, not prometheus_client's global one: importing this
module twice (tests, a second App in one process) never registers a name twice, and only
gatectl's own series are exposed. What an I/O owner already counts in its ``health()`` (frames
per gate, camera outages, the outbox, the sync connection) is not counted a second time here:
`HealthMetrics` turns the health collector's dict into series when /metrics is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

# seconds (Prometheus' base unit), bucketed for CPU inference: 2 ms .. 2.5 s
INFERENCE = Histogram(
    "gatectl_inference_seconds", "Model inference time per frame, per stage.", ["stage"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56),
    registry=REGISTRY,
)
DECISIONS = Counter(
    "gatectl_decisions", "Gate decisions by gate kind and outcome.", ["kind", "outcome"],
    registry=REGISTRY,
)
RELAY_COMMANDS = Counter(
    "gatectl_relay_commands", "Commands sent to relay outputs.", ["board", "command"],
    registry=REGISTRY,
)
RELAY_ERRORS = Counter(
    "gatectl_relay_errors", "Relay commands a board refused (offline, queue full), per door, "
    "barrier or elevator.", ["controller"],
    registry=REGISTRY,
)
STORE_WRITE = Histogram(
    "gatectl_store_write_seconds", "SQLite write transactions, lock wait included.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
    registry=REGISTRY,
)


def inference_ms(stage: str, ms: float) -> None:
    """For stages whose time is already measured in milliseconds (the face analyzer's)."""
    INFERENCE.labels(stage).observe(ms / 1000)


class HealthMetrics(Collector):
    """Series read from the health collector's dict (`runtime.health`) at scrape time."""

    def __init__(self, health: Callable[[], dict[str, Any]]):
        self.health = health

    def collect(self) -> Iterator[Metric]:
        h = self.health()
        gates, cameras = h.get("gates", {}), h.get("cameras", {})
        analysed = CounterMetricFamily(
            "gatectl_frames_analysed", "Frames a gate analysed.", labels=["gate"])
        skipped = CounterMetricFamily(
            "gatectl_frames_skipped", "Frames a gate did not analyse (stale, over its rate).",
            labels=["gate"])
        for name, g in gates.items():
            analysed.add_metric([name], _num(g.get("frames")))
            cam = cameras.get(name, {})
            dropped = sum(_num(cam.get(k)) for k in ("dropped_stale", "dropped_overwritten"))
            skipped.add_metric([name], _num(g.get("skipped")) + dropped)
        outages = CounterMetricFamily(
            "gatectl_camera_outages", "Times a camera was lost.", labels=["camera"])
        up = GaugeMetricFamily("gatectl_camera_up", "1 while a camera delivers.", labels=["camera"])
        for name, c in cameras.items():
            outages.add_metric([name], _num(c.get("outages")))
            up.add_metric([name], float(c.get("state") == "running"))
        failed = CounterMetricFamily(
            "gatectl_board_commands_failed", "Relay commands a board did not carry out.",
            labels=["board"])
        for name, b in h.get("boards", {}).items():
            failed.add_metric([name], _num(b.get("commands_failed")))
        yield from (analysed, skipped, outages, up, failed)
        sync = h.get("sync")
        if sync is not None:
            outbox = sync.get("outbox") or {}
            yield GaugeMetricFamily("gatectl_sync_connected", "1 while connected to the broker.",
                                    value=float(bool(sync.get("connected"))))
            yield GaugeMetricFamily("gatectl_outbox_depth", "Outbox rows not yet confirmed.",
                                    value=_num(outbox.get("pending")))
            yield GaugeMetricFamily("gatectl_outbox_oldest_age_seconds",
                                    "Age of the oldest outbox row (0 when empty).",
                                    value=_num(outbox.get("oldest_age_s")))
        yield GaugeMetricFamily("gatectl_disk_free_bytes", "Free space in the state folder.",
                                value=_num(h.get("disk_free_mb")) * 1024 * 1024)
        yield GaugeMetricFamily("gatectl_events_unrecorded", "Events the store refused.",
                                value=_num(h.get("events_unrecorded")))


def _num(v: Any) -> float:
    """A health value as a sample (None, a missing key: 0)."""
    return float(v) if isinstance(v, (int, float)) else 0.0
