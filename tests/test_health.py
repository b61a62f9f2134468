"""One health protocol: every I/O owner says how it is doing through ``health()``, and the
runner's one collector reads them all into what the status topic carries."""

from __future__ import annotations

import threading

import pytest

from gatectl.control.clock import ClockWatch
from gatectl.control.controls import Controls
from gatectl.gates.ebike.gate import EbikeGate
from gatectl.gates.face.gate import FaceGate
from gatectl.gates.plate.lane import PlateLane
from gatectl.hw.relay import SimulatedRelay
from gatectl.hw.serial.port import SerialBoard
from gatectl.runtime.runner import GateWorker, Runner
from gatectl.sources.camera import CameraGrabber
from gatectl.sources.media import read_image
from gatectl.store.recorder import EventRecorder
from gatectl.sync.client import SyncClient
from tests.conftest import FACES, enroll

OWNERS = [CameraGrabber, SerialBoard, SimulatedRelay, SyncClient, EventRecorder, Controls, ClockWatch,
          FaceGate, PlateLane, EbikeGate, GateWorker]


@pytest.mark.parametrize("owner", OWNERS, ids=lambda c: c.__name__)
def test_every_io_owner_reports_through_health_only(owner):
    assert callable(getattr(owner, "health", None))
    assert not any(hasattr(owner, old) for old in ("status", "stats")), "one name for health, not four"


def test_the_collector_reads_every_owner_including_the_gates(app):
    enroll(app, "Rose Leslie", "rose_leslie_01.jpg")
    cfg = app.cfg.gates[0]
    grabber = CameraGrabber(app.cfg.camera(cfg.camera))
    worker = GateWorker(lambda: app.gate(cfg), grabber.reader(), threading.Event())
    runner = Runner(app)
    runner.grabbers[cfg.camera] = grabber
    runner.workers.append(worker)
    image = read_image(FACES / "rose_leslie_02.jpg")
    for i in range(3):
        worker.gate.process(image, i * 0.1)

    h = runner.health()
    assert h["gates"] == {"gate": {"frames": 3, "liveness_refused": 0, "qr_ignored": 0, "errors": 0,
                                   "failing": False, "state": "running", "analysed": 0, "skipped": 0,
                                   "skipped_motion": 0, "restarts": 0}}
    assert h["cameras"]["cam0"]["state"] == "starting" and h["cameras"]["cam0"]["frames"] == 0
    assert h["boards"]["main"]["driver"] == "simulated" and h["boards"]["main"]["last_error"] is None
    assert set(h["controls"]) == {"door:door"}
    assert h["access"]["door"]["decisions"] == {"granted": 1}
    assert (h["events_unrecorded"], h["store_failing"]) == (0, None) and h["spool_bytes"] == 0
    assert h["clock"]["trusted"] is True and h["uptime_s"] >= 0 and h["disk_free_mb"] > 0
