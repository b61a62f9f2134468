"""`gatectl run` in process: one grabber per camera shared by its gates, supervised gate workers
(restart with backoff, outage and recovery as `system` events, the others untouched), the
watchdog rule, the frame budget, the motion pre-filter, shared sessions and providers."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from gatectl.config import parse_config
from gatectl.config.base import ConfigError
from gatectl.config.run import MotionConfig
from gatectl.hw.relay import SimulatedRelay
from gatectl.runtime.app import App
from gatectl.runtime.runner import Runner
from gatectl.sources import camera as camera_mod
from gatectl.sources.motion import MotionFilter
from gatectl.sources.media import read_image
from gatectl.vision import models as models_mod
from gatectl.vision.models import ModelError
from tests.conftest import FACES, NOFACE, REPO, wait_for


def config(folder: Path, gates: int = 2, run: dict | None = None, fps: float = 10) -> dict:
    return {
        "cameras": [{"name": "c", "source": str(folder), "kind": "images", "fps": fps, "loop": True,
                     "max_frame_age_ms": 3000}],
        "outputs": [{"name": f"o{i}", "channel": i} for i in range(gates)],
        "doors": [{"name": f"d{i}", "output": f"o{i}"} for i in range(gates)],
        "gates": [{"kind": "face", "name": f"g{i}", "camera": "c", "door": f"d{i}"} for i in range(gates)],
        "run": run or {},
    }


@pytest.fixture
def cam(tmp_path) -> Path:
    folder = tmp_path / "cam"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((FACES / "obama_02.jpg").read_bytes())
    (folder / "b.jpg").write_bytes((FACES / "biden_01.jpg").read_bytes())
    return folder


class Running:
    """A Runner on its own thread, stopped (and its App closed) at the end of the test."""

    def __init__(self, tmp_path: Path, data: dict):
        self.app = App(parse_config(data), tmp_path / "state", boards={"main": SimulatedRelay()})
        self.runner = Runner(self.app)
        self.thread = threading.Thread(target=self.runner.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        wait_for(lambda: len(self.runner.workers) == len(self.app.cfg.gates), 120, "the gates to start")
        return self

    def __exit__(self, *exc) -> None:
        self.runner.stop.set()
        self.thread.join(30)
        self.app.close()

    def worker(self, name: str):
        return next(w for w in self.runner.workers if w.name == name)

    def system_reasons(self) -> list[str]:
        rows = self.app.store.db.execute("SELECT gate, reason FROM events WHERE kind = 'system'").fetchall()
        return [f"{g}: {r}" for g, r in rows]


def test_two_gates_on_one_camera_open_it_once(tmp_path, cam, monkeypatch):
    opened = []  # sources made: one per device opened (a folder re-lists itself when it loops)
    real_init = camera_mod.ImageFolderSource.__init__

    def counting_init(self, cfg):
        opened.append(cfg.name)
        real_init(self, cfg)

    monkeypatch.setattr(camera_mod.ImageFolderSource, "__init__", counting_init)
    with Running(tmp_path, config(cam, gates=2)) as r:
        wait_for(lambda: all(w.analysed >= 3 for w in r.runner.workers), 120, "both gates to analyse frames")
        assert opened == ["c"]  # one device open for both gates
        assert list(r.runner.grabbers) == ["c"] and set(r.runner.health()["cameras"]) == {"c"}
        assert set(r.runner.health()["gates"]) == {"g0", "g1"}


def test_a_gate_that_raises_repeatedly_is_restarted_and_the_other_keeps_running(tmp_path, cam, monkeypatch):
    failures = {"left": 6}
    real_gate = App.gate

    def gate(self, cfg):
        g = real_gate(self, cfg)
        if cfg.name == "g0":
            process = g.process

            def flaky(image, t):
                if failures["left"] > 0:
                    failures["left"] -= 1
                    raise RuntimeError("decoder fault")
                return process(image, t)

            g.process = flaky
        return g

    monkeypatch.setattr(App, "gate", gate)
    with Running(tmp_path, config(cam, run={"restart_after_errors": 3})) as r:
        bad, good = r.worker("g0"), r.worker("g1")
        wait_for(lambda: any("g0 running again" in x for x in r.system_reasons()), 120, "g0 to recover")
        reasons = r.system_reasons()
        downs = [x for x in reasons if "down: 3 frames in a row raised" in x]
        assert len(downs) == 2 and all(x.startswith("g0: gate g0 down") for x in downs)  # 6 = 3 + 3
        assert "decoder fault" in downs[0] and "restarting in 1 s" in downs[0] and "restarting in 2 s" in downs[1]
        assert bad.restarts == 2 and bad.state == "running" and bad.health()["restarts"] == 2
        assert good.restarts == 0 and not any("g1" in x for x in reasons)
        before = good.analysed
        wait_for(lambda: good.analysed > before and bad.analysed > 0, 60, "both gates analysing")
        assert r.runner.cannot_work(__import__("time").monotonic()) is None


def test_a_hung_gate_is_restarted_and_every_gate_down_withholds_the_watchdog(tmp_path, cam, monkeypatch):
    release = threading.Event()
    real_gate = App.gate
    built = []

    def gate(self, cfg):
        g = real_gate(self, cfg)
        built.append(cfg.name)
        if len(built) == 1:  # the first gate built hangs in its first frame
            g.process = lambda image, t: release.wait(60)
        return g

    monkeypatch.setattr(App, "gate", gate)
    with Running(tmp_path, config(cam, gates=1, run={"stall_s": 3})) as r:  # a slow frame is not hung
        w = r.worker("g0")
        wait_for(lambda: w.state == "down", 30, "the hung gate to be seen down")
        import time
        assert r.runner.cannot_work(time.monotonic()).startswith("every gate is down: g0")
        assert w.abandoned == 1
        wait_for(lambda: any("g0 running again" in x for x in r.system_reasons()), 60, "the restarted gate")
        assert r.runner.cannot_work(time.monotonic()) is None
        assert any("hung in a frame" in x for x in r.system_reasons())
        release.set()


def test_max_fps_bounds_the_frames_analysed_and_counts_the_skipped(tmp_path, cam):
    with Running(tmp_path, config(cam, gates=1, fps=20, run={"max_fps": 2})) as r:
        w = r.worker("g0")
        wait_for(lambda: w.analysed >= 1, 120, "a first frame")
        import time
        t0, n0, s0 = time.monotonic(), w.analysed, w.health()["skipped"]
        # 60 frames the gate did not take: 3 s at the camera's 20 fps, longer on a loaded machine
        wait_for(lambda: w.health()["skipped"] - s0 >= 60, 90, "frames skipped over max_fps")
        rate = (w.analysed - n0) / (time.monotonic() - t0)
        assert rate <= 2.5, rate


def test_motion_filter_spares_a_still_scene_and_holds_after_motion():
    f = MotionFilter(MotionConfig(enabled=True, hold_s=2.0))
    empty = read_image(NOFACE / "yolox_dog_bicycle.jpg")
    assert f.wants(empty, 0.0)  # the first frame is looked at
    assert f.wants(empty, 1.0)  # within the hold of that first look
    assert [f.wants(empty, t) for t in (2.5, 3.0, 10.0)] == [False, False, False]
    assert f.spared == 3
    person = read_image(FACES / "obama_02.jpg")
    assert f.wants(person, 11.0)  # someone walked in: a different picture
    assert f.wants(person, 12.5)  # standing still, within the hold: still analysed
    assert not f.wants(person, 13.5)
    noisy = np.clip(empty.astype(np.int16) + np.random.default_rng(0).integers(-3, 4, empty.shape), 0, 255)
    g = MotionFilter(MotionConfig(enabled=True, hold_s=0))
    g.wants(empty, 0.0)
    assert not g.wants(noisy.astype(np.uint8), 1.0)  # sensor noise is not motion
    assert MotionFilter(MotionConfig()).wants(empty, 0.0)  # off by default: every frame


def test_motion_filter_idle_look_and_cost():
    import time
    f = MotionFilter(MotionConfig(enabled=True, hold_s=0, idle_every_s=5))
    frame = np.zeros((1080, 1920, 3), np.uint8)
    assert f.wants(frame, 0.0)
    assert not f.wants(frame, 1.0) and f.wants(frame, 5.0)
    t0 = time.process_time()  # CPU time: what other processes take of the machine does not count
    for i in range(50):
        f.wants(frame, 6.0 + i * 0.01)
    assert (time.process_time() - t0) / 50 < 0.005  # a 1080p frame in well under 5 ms of CPU


def test_gates_share_one_session_per_model(tmp_path, cam):
    app = App(parse_config(config(cam, gates=2)), tmp_path / "s", boards={"main": SimulatedRelay()})
    try:
        first = app.gate(app.cfg.gates[0])
        n = len(models_mod._SESSIONS)
        second = app.gate(app.cfg.gates[1])
        assert len(models_mod._SESSIONS) == n  # the second face gate opened no session
        assert first.analyzer.detector.session is second.analyzer.detector.session
    finally:
        app.close()


def test_an_unavailable_provider_is_one_line_naming_it(tmp_path, cam):
    import onnxruntime

    assert "TensorrtExecutionProvider" not in onnxruntime.get_available_providers()
    data = config(cam, run={"providers": {"default": ["TensorrtExecutionProvider", "CPUExecutionProvider"]}})
    cfg = parse_config(data)
    problems = cfg.startup_problems()
    assert len(problems) == 1 and problems[0].startswith(
        "run.providers.default: execution provider 'TensorrtExecutionProvider' is not available"), problems
    app = App(cfg, tmp_path / "s")
    try:
        with pytest.raises(ModelError, match="TensorrtExecutionProvider"):
            app.models.session("yunet_n")
    finally:
        app.close()
    cpu = parse_config(config(cam, run={"providers": {"yunet_n": ["CPUExecutionProvider"]}}))
    assert cpu.startup_problems() == []
    typo = App(parse_config(config(cam, run={"providers": {"yunet": ["CPUExecutionProvider"]}})), tmp_path / "t")
    try:
        with pytest.raises(ModelError, match=r"^run.providers.yunet: no model named 'yunet'"):
            typo.models
    finally:
        typo.close()


def test_the_unit_waits_longer_than_the_longest_stop_and_reloads_with_sighup():
    from gatectl.config.run import RunConfig

    unit = dict(line.split("=", 1) for line in (REPO / "systemd/gatectl.service").read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    longest = next(m.le for m in RunConfig.model_fields["stop_timeout_s"].metadata if hasattr(m, "le"))
    assert float(unit["TimeoutStopSec"]) > longest
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_run_section_is_checked():
    with pytest.raises(ConfigError) as e:
        parse_config({"run": {"max_fps": 0, "stop_timeout_s": 600, "providers": {"x": ["GPU"]}}})
    lines = e.value.lines
    assert any(line.startswith("run.max_fps: ") for line in lines)
    assert any(line.startswith("run.stop_timeout_s: ") for line in lines)
    assert any(line.startswith("run.providers.x[0]: ") for line in lines)
    with pytest.raises(ConfigError) as e:
        parse_config({**config(Path("/tmp")), "run": {"gate_max_fps": {"nope": 2}}})
    assert e.value.lines == ["run.gate_max_fps.nope: unknown gate 'nope'"]


def test_the_stop_flushes_the_outbox_while_the_broker_takes_it_and_never_past_the_timeout(tmp_path, caplog):
    import time

    data = {**config(Path("/tmp"), gates=1), "sync": {"enabled": True}}  # the outbox is kept
    app = App(parse_config(data), tmp_path / "s", boards={"main": SimulatedRelay()})
    try:
        runner = Runner(app)
        connected = threading.Event()
        connected.set()
        runner.sync = type("Sync", (), {"connected": connected})()  # the sync thread, still running
        for i in range(3):
            app.store.enqueue("resync", f"r{i}")
        rows = [r["seq"] for r in app.store.outbox_after(0, 10)]
        threading.Timer(0.3, lambda: app.store.outbox_done(rows)).start()  # the centre's receipts
        t0 = time.monotonic()
        runner._flush_outbox(t0 + 10)
        assert 0.3 <= time.monotonic() - t0 < 5 and app.store.outbox_stats()["pending"] == 0

        app.store.enqueue("resync", "late")  # never taken: the stop still ends at its deadline
        t0 = time.monotonic()
        runner._flush_outbox(t0 + 0.5)
        assert 0.5 <= time.monotonic() - t0 < 2
        assert "outbox not flushed before the stop timeout" in caplog.text
        connected.clear()  # the broker is away: nothing would leave, no waiting at all
        t0 = time.monotonic()
        runner._flush_outbox(t0 + 10)
        assert time.monotonic() - t0 < 0.5
    finally:
        app.close()


def test_config_check_names_an_unavailable_provider_in_one_line(tmp_path, cam):
    from tests.conftest import one_line_error, run_cli

    text = f"""
[[cameras]]
name = "c"
source = "{cam}"

[[outputs]]
name = "o"

[[doors]]
name = "d"
output = "o"

[[gates]]
kind = "face"
name = "g"
camera = "c"
door = "d"

[run.providers]
yunet_n = ["CUDAExecutionProvider"]
"""
    cfg = tmp_path / "site.toml"
    cfg.write_text(text)
    line = one_line_error(run_cli("config", "check", str(cfg)))
    assert "run.providers.yunet_n: execution provider 'CUDAExecutionProvider' is not available" in line
    assert "(available: " in line and "CPUExecutionProvider" in line
