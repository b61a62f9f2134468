"""Safety of the whole chain against the simulated Modbus board on a real pty:
a killed gatectl never leaves a door unlocked, outputs start off, inputs reach the doors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gatectl.hw.serial.modbus import flash_on
from gatectl.hw.serial.sim import SimulatedBoard
from tests.conftest import FACES, REPO, elevator_car_config, run_cli, wait_for


@pytest.fixture
def board():
    b = SimulatedBoard(address=1, channels=8, inputs=8)
    yield b
    b.stop()


def site_config(tmp_path, port: str, hw_pulse: bool = True, camera_photo: str | None = "obama_02.jpg",
                extra: str = "") -> os.PathLike:
    cam = tmp_path / "cam"
    cam.mkdir(exist_ok=True)
    if camera_photo:
        (cam / "a.jpg").write_bytes((FACES / camera_photo).read_bytes())
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[[cameras]]
name = "c"
source = "{cam}"
kind = "images"
fps = 5
loop = true
max_frame_age_ms = 2000

[[boards]]
name = "main"
driver = "modbus"
port = "{port}"
hw_pulse = {str(hw_pulse).lower()}
timeout_ms = 100
poll_ms = 30

[[outputs]]
name = "door"
channel = 0

[[inputs]]
name = "contact"
index = 0
role = "door_contact"
door = "door"

[[inputs]]
name = "fire"
index = 7
role = "fire_alarm"

[[doors]]
name = "door"
output = "door"
unlock_seconds = 3
{extra}
[[gates]]
kind = "face"
name = "g"
camera = "c"
door = "door"
""")
    return cfg


def start_run(cfg, data):
    return subprocess.Popen([sys.executable, "-m", "gatectl", "--config", str(cfg), "--data", str(data), "run"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_while_unlocked_the_board_relocks_by_itself(tmp_path, board):
    d = tmp_path / "state"
    cfg = site_config(tmp_path, board.port)
    r = run_cli("enroll", "--name", "Obama", "--unit", "1", "--photo", str(FACES / "obama_01.jpg"),
                data=d, config=cfg)
    assert r.returncode == 0, r.stderr
    proc = start_run(cfg, d)
    try:
        wait_for(lambda: board.coils()[0], 90, "the resident to be let in", step=0.02)
        proc.send_signal(signal.SIGKILL)  # mid-unlock: no finally, no shutdown code runs
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        assert board.coils()[0], "still unlocked right after the kill (the board times it)"
        wait_for(lambda: not board.coils()[0], 5, "the board to relock by its own timer", step=0.02)
        assert time.monotonic() - killed_at <= 3.5
    finally:
        proc.kill()
        proc.communicate()
    frames = board.frames()
    assert flash_on(1, 0, 3.0) in frames  # the grant was sent as a 3 s board-timed pulse
    events = [json.loads(l) for l in run_cli("events", "list", "--json", data=d, config=cfg).stdout.splitlines()]
    assert [e["decision"] for e in events] == ["granted"]  # recorded before the door opened


def test_outputs_are_forced_off_at_start(tmp_path, board):
    """A latch-only board left ON by a crash (the LCUS hazard) is switched off by the next start."""
    cfg = site_config(tmp_path, board.port, hw_pulse=False, camera_photo=None)
    board.set_coil(0, True)
    board.set_coil(3, True)
    proc = start_run(cfg, tmp_path / "state")
    try:
        wait_for(lambda: not any(board.coils()), 30, "every relay off", step=0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_door_contact_and_fire_alarm_reach_the_doors(tmp_path, board):
    """Forced door -> alert event; fire alarm on a fail-safe door -> released while active."""
    cfg = site_config(tmp_path, board.port, camera_photo=None)
    text = cfg.read_text().replace('unlock_seconds = 3\n', 'unlock_seconds = 3\nfail_mode = "safe"\n')
    cfg.write_text(text)
    d = tmp_path / "state"
    proc = start_run(cfg, d)
    try:
        time.sleep(3)  # let it start and read the starting input states
        board.set_input(0, True)  # the door opens with no grant
        wait_for(lambda: any("door_forced" in e["reason"] for e in events(d, cfg)), 20, "a door_forced alert",
                 step=0.02)
        board.set_input(0, False)
        board.set_input(7, True)  # fire alarm
        wait_for(lambda: board.coils()[0], 10, "the fire alarm to release the fail-safe door", step=0.02)
        board.set_input(7, False)
        wait_for(lambda: not board.coils()[0], 10, "the door to lock again when the alarm clears", step=0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def events(d, cfg) -> list[dict]:
    out = run_cli("events", "list", "--json", data=d, config=cfg).stdout
    return [json.loads(l) for l in out.splitlines()]


def test_relay_cli_pulse_and_inputs(tmp_path, board):
    cfg = site_config(tmp_path, board.port, camera_photo=None)
    board.set_input(7, True)
    r = run_cli("relay", "inputs", config=cfg, data=tmp_path / "s")
    assert r.returncode == 0, r.stderr
    rows = {l.split()[0]: l.split()[-1] for l in r.stdout.splitlines()[1:3]}
    assert rows == {"contact": "inactive", "fire": "ACTIVE"}
    r = run_cli("relay", "pulse", "--output", "door", "--seconds", "2", config=cfg, data=tmp_path / "s")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["output door (board main channel 0): on for 2 s (board-timed)",
                                     "output door (board main channel 0): off again"]
    assert flash_on(1, 0, 2.0) in board.frames() and not board.coils()[0]
    r = run_cli("relay", "pulse", "--output", "gate9", config=cfg, data=tmp_path / "s")
    assert r.returncode == 2 and r.stderr.strip() == "gatectl: --output: unknown output 'gate9' (door)"


def test_dead_port_is_one_line(tmp_path):
    cfg = site_config(tmp_path, str(tmp_path / "no-such-tty"), camera_photo=None)
    r = run_cli("relay", "pulse", "--output", "door", "--timeout", "1", config=cfg, data=tmp_path / "s")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-tty" in lines[0], r.stderr


def test_doctor_reports_an_unplugged_board_and_a_working_one(tmp_path, board):
    dead = site_config(tmp_path, str(tmp_path / "ttyUSB9"), camera_photo=None)
    r = run_cli("doctor", "--camera-timeout", "1", config=dead, data=tmp_path / "s")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    fails = [l for l in r.stdout.splitlines() if l.startswith("[FAIL] relay board")]
    assert len(fails) == 1 and "ttyUSB9" in fails[0] and "No such file" in fails[0], r.stdout
    live = site_config(tmp_path, board.port, camera_photo=None)
    r = run_cli("doctor", "--camera-timeout", "1", config=live, data=tmp_path / "s")
    assert "[ok] relay board main: online (modbus)" in r.stdout.splitlines(), r.stdout


def test_elevator_hold_from_a_running_daemon_lapses_when_it_is_killed(tmp_path, board):
    """`gatectl run` with an e-bike gate on a looping elevator frame: the hold contact is only ever
    renewed flash-on pulses, never a latch, and a SIGKILL leaves the car free within one pulse."""
    cfg = elevator_car_config(tmp_path, board.port, max_on_s=5, pulse_s=2, renew_s=0.5)
    proc = start_run(cfg, tmp_path / "state")
    try:
        wait_for(lambda: board.coils()[2], 90, "the car to be held", step=0.02)
        # renewals keep it held, without a gap, for longer than one 2 s pulse
        until = time.monotonic() + 2.5
        while time.monotonic() < until:
            assert board.coils()[2], "the hold lapsed between renewals"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        wait_for(lambda: not board.coils()[2], 5, "the board to drop the hold by itself", step=0.02)
        assert time.monotonic() - killed_at <= 2.5
    finally:
        proc.kill()
        proc.communicate()
    writes = [f for f in board.frames() if f[1] == 0x05 and f[3] == 2]
    assert len(writes) >= 3 and all(f == flash_on(1, 2, 2.0) for f in writes), [f.hex() for f in writes]
