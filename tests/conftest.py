"""Shared fixtures: real photos from tests/data, real models, a real SQLite file per test."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatectl.config import default_config
from gatectl.hw.relay import SimulatedRelay
from gatectl.people.enroll import Sample
from gatectl.runtime.app import App
from gatectl.sources.media import read_image

DATA = Path(__file__).parent / "data"
FACES = DATA / "faces"
LIVENESS = DATA / "liveness"
NOFACE = DATA / "noface"
REPO = Path(__file__).parent.parent


def wait_for(cond, timeout: float = 3.0, what: str = "the condition", step: float = 0.005):
    """Poll ``cond`` until it is truthy and return its value; fail after ``timeout`` seconds with
    what was awaited, rather than sleep a fixed time or hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def assert_pulse_length(elapsed: float, seconds: float) -> None:
    """A driver-timed pulse as the board saw it (between the ON and the OFF frame's arrival):
    never much short of ``seconds`` (the two arrivals may be scheduled unevenly), late only by
    how late a loaded 2-core machine runs the driver's thread - bounded, never open-ended."""
    assert seconds - 0.05 <= elapsed < seconds + 0.8, f"pulse of {elapsed:.3f} s for {seconds} s"


def face_truth() -> list[tuple[str, str, int]]:
    """(file, identity, n_faces) from the shared ground truth."""
    with open(FACES / "ground_truth.csv", newline="") as f:
        return [(r["file"], r["identities_left_to_right"], int(r["n_faces"])) for r in csv.DictReader(f)]


def single_face_photos() -> dict[str, list[str]]:
    """identity -> its single-face photos, in file order."""
    out: dict[str, list[str]] = {}
    for file, ident, n in face_truth():
        if n == 1:
            out.setdefault(ident, []).append(file)
    return out


class FakeClock:
    """Wall clock the test moves by hand: inactivity and retention without sleeping.
    ``advance`` is time passing (the monotonic clock moves too); ``jump`` moves the wall clock
    alone, as a bad NTP step or a device without an RTC does."""

    def __init__(self, t: float = 1_790_000_000.0):
        self.t = t
        self.mono = 1000.0

    def __call__(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.mono += seconds

    def jump(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def relay(clock) -> SimulatedRelay:
    return SimulatedRelay()


@pytest.fixture
def app(tmp_path, relay, clock) -> App:
    a = App(default_config(), tmp_path / "state", boards={"main": relay}, clock=clock, monotonic=clock.monotonic)
    yield a
    a.close()


def enroll(app: App, name: str, *photos: str, unit: str = "1-1-101"):
    return app.enroller().enroll_resident(name, unit, [Sample(p, read_image(FACES / p)) for p in photos])


def elevator_car_config(tmp_path: Path, port: str, *, max_on_s: float, pulse_s: float,
                        renew_s: float, extra: str = "") -> Path:
    """A site with one e-bike gate on a looping elevator frame (the moped of pic_1, found by the
    shipped detector) whose car's hold contact is channel 2 of the Modbus board on ``port``."""
    cam = tmp_path / "car"
    cam.mkdir()
    (cam / "a.png").write_bytes((REPO / "tests/data/ebike/paddle_elevator_pic_1.png").read_bytes())
    cfg = tmp_path / "lift.toml"
    cfg.write_text(f"""
[[cameras]]
name = "car"
source = "{cam}"
kind = "images"
fps = 5
loop = true
max_frame_age_ms = 3000

[[boards]]
name = "main"
driver = "modbus"
port = "{port}"
timeout_ms = 100
poll_ms = 30

[[outputs]]
name = "hold"
channel = 2
max_on_s = {max_on_s}

[[elevators]]
name = "car_a"
hold_output = "hold"
pulse_s = {pulse_s}
renew_s = {renew_s}

[[gates]]
kind = "ebike"
name = "cam"
camera = "car"
elevator = "car_a"
{extra}""")
    return cfg


def run_cli(*args: str, data: Path | None = None, config: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "gatectl"]
    if config:
        cmd += ["--config", str(config)]
    if data:
        cmd += ["--data", str(data)]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto of this test's own on a free port (tests/broker.py), killed afterwards."""
    from tests.broker import Broker

    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop(kill=True)


def ok(r):
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def one_line_error(r, code=2):
    assert r.returncode == code, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]
