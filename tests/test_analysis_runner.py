"""The analysers inside `gatectl run`'s runner: the rules on the supervisor's schedule (held while
the clock is not trusted), and a tailgate watch fed the frames of the gate on its camera."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from gatectl.config import default_config, parse_config
from gatectl.runtime.app import App
from gatectl.runtime.runner import GateWorker, Runner
from gatectl.sources.camera import Frame
from tests.conftest import FakeClock, wait_for
from tests.tailgate_clips import SITE

H = 3600.0


def test_scheduled_rules_record_alerts_and_hold_on_a_jumped_clock(tmp_path):
    clock = FakeClock()
    app = App(default_config(), tmp_path / "state", clock=clock, monotonic=clock.monotonic)
    try:
        rid = app.store.add_resident("G", "1-1-101", [(np.ones(512, np.float32) / 512**0.5, 0.9)],
                                     "m").id
        app.store.set_care(rid, True)
        app.recorder.record("gate", "access", "granted", "ok", resident_id=rid, ts=clock() - 30 * H)
        runner = Runner(app)
        app.clockwatch.observe()
        clock.jump(3 * H)  # a bad NTP step: the rules' windows would be wrong
        app.clockwatch.observe()
        assert not app.clockwatch.trusted
        assert runner._analyse(wait=True) == 60.0  # held, looked at again in a minute
        assert [e for e in app.store.events(kind="alert") if e.gate == "analysis"] == []
        app.clockwatch.confirm()
        assert runner._analyse(wait=True) == app.cfg.analysis.every_s
        assert [e.reason.split(":")[0] for e in app.store.events(kind="alert")
                if e.gate == "analysis"] == ["not_seen"]
        assert runner.health()["analysis"]["raised"] == 1
    finally:
        app.close()


@dataclass
class FakeGateCfg:
    name: str = "gate"
    camera: str = "door_cam"


class FakeGate:
    cfg = FakeGateCfg()

    def process(self, image, t):
        return []

    def health(self):
        return {}


class Broken:
    name = "broken"

    def process(self, image, t, faces=None):
        raise RuntimeError("analyser bug")

    def health(self):
        return {}


class FakeGrabber:
    """A camera reader with a few frames, then none (the camera is not finished: it waits)."""

    def __init__(self, frames):
        self.frames = list(frames)
        self.missed = 0
        self.camera = type("Camera", (), {"finished": False})()

    def get(self, timeout):
        if self.frames:
            return self.frames.pop(0)
        time.sleep(min(timeout, 0.05))
        return None

    def health(self):
        return {"state": "online", "fps": 0.0}


def test_a_tailgate_watch_rides_on_the_worker_of_its_cameras_gate(tmp_path):
    app = App(parse_config(SITE), tmp_path / "state")
    try:
        app.controls.grant("door", None)  # unlocked: the watch looks
        runner = Runner(app)
        stop = threading.Event()
        frames = [Frame(np.zeros((480, 640, 3), np.uint8), i, 100.0 + i, "door_cam")
                  for i in range(3)]
        worker = GateWorker(FakeGate, FakeGrabber(frames), stop)  # type: ignore[arg-type]
        runner.workers.append(worker)
        runner._attach_tailgate_watches(runner.workers)
        [watch] = worker.observers
        worker.observers.append(Broken())
        worker.start()
        wait_for(lambda: watch.runs == 3 and worker.observer_errors == 3, 30,
                 "the watch ran on the gate's frames, the broken one failed on each")
        stop.set()
        worker.thread.join(5)
        assert runner.health()["tailgate"]["tailgate-door"]["runs"] == 3
        assert worker.thread.is_alive() is False and worker.errors == 0  # not the gate's
        assert watch.counter.granted == 1  # granted before the watch's first frame: counted
        counter = watch.counter
        worker.retire(time.monotonic())  # the supervisor restarts the gate: a fresh gate ...
        worker.revive(time.monotonic())
        stop.set()
        worker.thread.join(5)
        assert worker.observers[0] is watch and watch.counter is counter  # ... the same watch
    finally:
        app.close()
