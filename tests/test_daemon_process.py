"""`gatectl run` as a real process: sd_notify on a real unix datagram socket (READY, WATCHDOG,
RELOADING, STOPPING), SIGHUP with a bad and a good config, SIGTERM with a door unlocked on the
pty board, and supervision of a camera source and of a gate that raise (tests/faulty_gatectl.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gatectl.hw.serial.sim import SimulatedBoard
from tests.conftest import FACES, NOFACE, REPO, elevator_car_config, run_cli, wait_for


class Notify:
    """A NOTIFY_SOCKET of our own: every datagram the daemon sends, in order."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._recv, daemon=True)
        self._thread.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def count(self, prefix: str) -> int:
        return sum(1 for m in list(self.messages) if m.startswith(prefix))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class Daemon:
    """`python -m gatectl run` (or the fault-injecting wrapper) with its log in a file."""

    def __init__(self, tmp_path: Path, cfg: Path, data: Path, notify: Notify | None = None,
                 wrapper: bool = False, env: dict | None = None):
        self.log = tmp_path / "daemon.log"
        self._out = self.log.open("w")
        environ = {**os.environ, **(env or {})}
        if notify is not None:
            environ.update(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="2000000")
        entry = [str(REPO / "tests" / "faulty_gatectl.py")] if wrapper else ["-m", "gatectl"]
        self.proc = subprocess.Popen(
            [sys.executable, *entry, "--config", str(cfg), "--data", str(data), "run"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=self._out, text=True, env=environ)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=40)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._out.close()


@pytest.fixture
def board():
    b = SimulatedBoard(address=1, channels=8, inputs=8)
    yield b
    b.stop()


def face_site(tmp_path: Path, port: str, gates: int = 1, photo: Path = FACES / "obama_02.jpg",
              broken: bool = False) -> Path:
    cam = tmp_path / "cam"
    cam.mkdir(exist_ok=True)
    (cam / "a.jpg").write_bytes(photo.read_bytes())
    doors = "".join(f"""
[[outputs]]
name = "o{i}"
channel = {i}

[[doors]]
name = "d{i}"
output = "o{i}"
unlock_seconds = 30
""" for i in range(gates))
    gate_list = "".join(f"""
[[gates]]
kind = "face"
name = "g{i}"
camera = "{'nope' if broken and i == 0 else 'c'}"
door = "d{i}"
""" for i in range(gates))
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
hw_pulse = false
timeout_ms = 100
poll_ms = 30

[run]
stop_timeout_s = 5
{doors}{gate_list}""")
    return cfg


def events(cfg: Path, data: Path) -> list[dict]:
    out = run_cli("events", "list", "--json", "--limit", "500", data=data, config=cfg).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_notify_sighup_bad_and_good_config_and_sigterm_locks_the_door(tmp_path, board):
    data = tmp_path / "state"
    cfg = face_site(tmp_path, board.port)
    r = run_cli("enroll", "--name", "Obama", "--unit", "1", "--photo", str(FACES / "obama_01.jpg"),
                data=data, config=cfg)
    assert r.returncode == 0, r.stderr
    notify = Notify(tmp_path / "notify.sock")
    d = Daemon(tmp_path, cfg, data, notify)
    try:
        wait_for(lambda: notify.count("READY=1"), 120, "READY=1", step=0.05)
        wait_for(lambda: notify.count("WATCHDOG=1") >= 2, 30, "the watchdog being petted", step=0.05)
        wait_for(lambda: board.coils()[0], 90, "the resident to be let in (a 30 s latch)", step=0.02)

        good = cfg.read_text()
        face_site(tmp_path, board.port, broken=True)  # gates[0].camera: unknown camera 'nope'
        os.kill(d.proc.pid, signal.SIGHUP)
        wait_for(lambda: notify.count("READY=1") >= 2, 30, "READY again after the refused reload", step=0.05)
        refused = [line for line in d.lines() if "config reload" in line]
        assert len(refused) == 1, refused
        assert "config reload refused" in refused[0] and "gates[0].camera: unknown camera 'nope'" in refused[0]
        assert notify.count("RELOADING=1") == 1 and d.proc.poll() is None
        petted = notify.count("WATCHDOG=1")
        wait_for(lambda: notify.count("WATCHDOG=1") > petted, 10, "the watchdog still petted", step=0.05)

        cfg.write_text(good)
        face_site(tmp_path, board.port, gates=2)  # a second face door on the same camera
        os.kill(d.proc.pid, signal.SIGHUP)
        wait_for(lambda: any("running 2 gate(s) on 1 camera(s)" in line for line in d.lines()), 120,
                 "the new config applied", step=0.05)
        wait_for(lambda: notify.count("READY=1") >= 3, 30, "READY after the applied reload", step=0.05)
        assert notify.count("RELOADING=1") == 2 and d.proc.poll() is None  # the same process id

        wait_for(lambda: board.coils()[0] and board.coils()[1], 90, "both doors open for the resident",
                 step=0.02)
        d.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: not any(board.coils()), 10, "every door locked on SIGTERM", step=0.02)
        # wait for the exit the SIGTERM started: a second SIGTERM during interpreter shutdown
        # (handlers back to the default) would kill it with -15
        assert d.proc.wait(timeout=40) == 0, d.log.read_text()
    finally:
        d.stop()
        notify.close()
    assert notify.count("STOPPING=1") >= 1
    assert "Traceback" not in d.log.read_text()
    granted = [e for e in events(cfg, data) if e["decision"] == "granted"]
    assert {e["gate"] for e in granted} == {"g0", "g1"}


def test_a_failing_camera_and_a_failing_gate_are_restarted_while_the_other_gate_runs(tmp_path):
    data = tmp_path / "state"
    cam = tmp_path / "cam"
    cam.mkdir()
    (cam / "a.jpg").write_bytes((NOFACE / "yolox_dog_bicycle.jpg").read_bytes())
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[[cameras]]
name = "c"
source = "{cam}"
kind = "images"
fps = 10
loop = true
max_frame_age_ms = 2000
reconnect_max_s = 0.5

[[outputs]]
name = "o0"
channel = 0

[[outputs]]
name = "o1"
channel = 1

[[doors]]
name = "d0"
output = "o0"

[[doors]]
name = "d1"
output = "o1"

[[gates]]
kind = "face"
name = "g0"
camera = "c"
door = "d0"

[[gates]]
kind = "face"
name = "g1"
camera = "c"
door = "d1"

[run]
restart_after_errors = 3
""")
    notify = Notify(tmp_path / "notify.sock")
    d = Daemon(tmp_path, cfg, data, notify, wrapper=True,
               env={"FAULT_READS": "4", "FAULT_GATE": "g0", "FAULT_FRAMES": "7"})
    try:
        wait_for(lambda: notify.count("READY=1"), 120, "READY=1", step=0.05)

        def recovered():
            reasons = [f"{e['gate']} {e['kind']}: {e['reason']}" for e in events(cfg, data)]
            return reasons if sum("running again" in r for r in reasons) >= 1 and any(
                "camera_recovered" in r for r in reasons) else None

        reasons = wait_for(recovered, 120, "the camera and gate g0 back", step=0.5)
        downs = [r for r in reasons if r.startswith("g0 system: gate g0 down")]
        # 7 faults: 3 (down), 3 (down), 1 then a good frame (a fault, not a run of them)
        assert len(downs) == 2 and "injected gate fault" in downs[0], reasons
        assert ["restarting in 1 s", "restarting in 2 s"] == sorted(
            r[r.index("restarting"):] for r in downs)  # the backoff doubles
        assert any(r.startswith("c camera: camera_lost") and "injected camera read fault" in r for r in reasons)
        assert not any(r.startswith("g1 system") for r in reasons), reasons  # g1 never went down
        wait_for(lambda: any("g0 running again" in r for r in recovered()), 60, "g0 running", step=0.5)
        petted = notify.count("WATCHDOG=1")
        wait_for(lambda: notify.count("WATCHDOG=1") > petted, 10, "the watchdog petted", step=0.05)
        assert d.proc.poll() is None
    finally:
        code = d.stop()
        notify.close()
    assert code == 0, d.log.read_text()


def test_sigterm_releases_a_held_elevator_at_once_and_exits_0(tmp_path, board):
    """A 10 s board-timed hold pulse would hold the car on after a stop; SIGTERM ends it."""
    cfg = elevator_car_config(tmp_path, board.port, max_on_s=10, pulse_s=10, renew_s=1,
                              extra="\n[run]\nstop_timeout_s = 3\n")
    d = Daemon(tmp_path, cfg, tmp_path / "state")
    try:
        wait_for(lambda: board.coils()[2], 90, "the car to be held", step=0.02)
        d.proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        wait_for(lambda: not board.coils()[2], 5, "the hold released on SIGTERM", step=0.02)
        assert time.monotonic() - stopped_at < 3  # not the end of the board's 10 s pulse
        # wait for the exit the SIGTERM started: a second SIGTERM during interpreter shutdown
        # (handlers back to the default) would kill it with -15
        assert d.proc.wait(timeout=40) == 0, d.log.read_text()
    finally:
        d.stop()
    assert "stopped; outputs off" in d.log.read_text()


def test_a_lone_gate_failing_on_every_frame_withholds_the_watchdog(tmp_path):
    """The daemon as a whole cannot work: no WATCHDOG=1 any more, so systemd restarts it."""
    cam = tmp_path / "cam"
    cam.mkdir()
    (cam / "a.jpg").write_bytes((NOFACE / "yolox_dog_bicycle.jpg").read_bytes())
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[[cameras]]
name = "c"
source = "{cam}"
kind = "images"
fps = 10
loop = true
max_frame_age_ms = 2000

[[outputs]]
name = "o0"

[[doors]]
name = "d0"
output = "o0"

[[gates]]
kind = "face"
name = "g0"
camera = "c"
door = "d0"

[run]
restart_after_errors = 2
""")
    notify = Notify(tmp_path / "notify.sock")
    d = Daemon(tmp_path, cfg, tmp_path / "state", notify, wrapper=True,
               env={"FAULT_GATE": "g0", "FAULT_FRAMES": "1000000"})
    try:
        wait_for(lambda: notify.count("READY=1"), 120, "READY=1", step=0.05)
        wait_for(lambda: any("every gate is down: g0; withholding the watchdog" in line for line in d.lines()),
                 30, "the watchdog withheld", step=0.05)
        petted = notify.count("WATCHDOG=1")
        wait_for(lambda: sum("g0: restarted" in line for line in d.lines()) >= 2, 30, "restarts", step=0.05)
        assert notify.count("WATCHDOG=1") == petted  # not even between two restarts
        assert d.proc.poll() is None
    finally:
        code = d.stop()
        notify.close()
    assert code == 0
