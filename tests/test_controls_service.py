"""Controllers wired to real outputs, inputs and the event log (`service.controls`).

The in-memory board runs on a fake clock so the timed scenarios take no sleeps; the elevator
lease and the offline board use the real serial driver on the simulated board's pty.
"""

from __future__ import annotations

import time

import cv2
import pytest

from gatectl.config import Config
from gatectl.config.hardware import ModbusBoardConfig
from gatectl.store.recorder import EventRecorder
from gatectl.hw.outputs import Outputs
from gatectl.hw.relay import SimulatedRelay
from gatectl.hw.serial import modbus
from gatectl.hw.serial.port import SerialBoard
from gatectl.hw.serial.sim import SimulatedBoard
from gatectl.control.controls import Controls
from gatectl.store import Store
from tests.conftest import FACES


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


SITE = {
    "outputs": [{"name": "door", "channel": 0}, {"name": "arm_open", "channel": 1},
                {"name": "arm_close", "channel": 2}, {"name": "hold", "channel": 3},
                {"name": "buzzer", "channel": 4}],
    "inputs": [{"name": "loop", "index": 0, "role": "vehicle_guard"},
               {"name": "fire", "index": 7, "role": "fire_alarm"}],
    "doors": [{"name": "door", "output": "door"}],
    "barriers": [{"name": "lane", "open_output": "arm_open", "close_output": "arm_close",
                  "guard_input": "loop"}],
    "elevators": [{"name": "car1", "hold_output": "hold", "alarm_output": "buzzer",
                   "pulse_s": 3, "renew_s": 1, "release_after_s": 5, "cap_s": 120}],
}


@pytest.fixture
def rig(tmp_path):
    clock = Clock()
    cfg = Config.model_validate(SITE)
    relay = SimulatedRelay(clock=clock)
    store = Store(tmp_path / "g.db")
    controls = Controls(cfg, Outputs(cfg.outputs, {"main": relay}),
                        EventRecorder(store, tmp_path / "snap"), clock=clock)
    controls.poll()  # the starting input states
    yield clock, relay, store, controls
    store.close()


def reasons(store: Store) -> list[str]:
    return [e.reason for e in store.events()]


def test_barrier_closes_only_after_the_vehicle_left_the_loop(rig):
    clock, relay, store, controls = rig
    controls.open_barrier("lane")
    assert relay.history[-1].channel == 1 and relay.is_on(1)
    clock.t += 2
    relay.set_input(0, True)  # car on the loop under the arm
    controls.poll()
    assert controls.health()["barrier:lane"] == "open"
    assert not any(p.channel == 2 for p in relay.history)
    clock.t += 3
    relay.set_input(0, False)
    controls.poll()
    assert relay.history[-1].channel == 2 and relay.is_on(2)  # closed once the car has passed
    assert controls.health()["barrier:lane"] == "closing"


def test_elevator_hold_renewed_released_and_recorded_with_snapshot(rig):
    clock, relay, store, controls = rig
    frame = cv2.imread(str(FACES / "obama_01.jpg"))
    for _ in range(50):  # 10 s of an e-bike in the car, frames every 0.2 s
        controls.ebike("car1", frame)
        controls.poll()
        assert relay.is_on(3) and relay.is_on(4)
        clock.t += 0.2
    hold_pulses = [p for p in relay.history if p.channel == 3]
    assert 9 <= len(hold_pulses) <= 11 and all(p.seconds == 3 for p in hold_pulses)
    alert, started = store.events()[:2]
    assert (alert.kind, alert.reason) == ("alert", "ebike_in_car: e-bike in the car") and alert.snapshot
    assert (started.kind, started.reason, started.snapshot) == ("control", "hold_started: e-bike in the car", None)
    clock.t += 5
    controls.poll()
    assert not relay.is_on(3) and not relay.is_on(4)
    assert reasons(store)[-1].startswith("hold_ended: e-bike gone; hold lasted 1")


def test_fire_alarm_input_releases_the_hold_and_no_new_one_starts(rig):
    clock, relay, store, controls = rig
    controls.ebike("car1")
    controls.poll()
    relay.set_input(7, True)
    clock.t += 0.1
    controls.poll()
    assert not relay.is_on(3)
    n = len(relay.history)
    for _ in range(20):
        clock.t += 0.5
        controls.ebike("car1")
        controls.poll()
    assert not any(p.channel == 3 for p in relay.history[n:])
    assert "fire_alarm: active; hold released" in reasons(store)
    relay.set_input(7, False)
    controls.poll()
    controls.ebike("car1")
    assert relay.is_on(3)


def test_hold_cap_raises_an_alert(rig):
    clock, relay, store, controls = rig
    for _ in range(130):
        controls.ebike("car1")
        controls.poll()
        clock.t += 1
    assert not relay.is_on(3) and relay.is_on(4)  # doors released, buzzer still sounding
    alerts = [e for e in store.events() if e.kind == "alert"]
    assert [a.reason.split(":")[0] for a in alerts] == ["ebike_in_car", "hold_cap_reached"]


def test_elevator_lease_lapses_on_the_board_when_gatectl_hangs(tmp_path):
    """Real driver, real pty: renewals are flash-on frames, never a latch; when the renewals
    stop (gatectl hung or killed) the board drops the hold within one pulse by itself."""
    sim = SimulatedBoard(baud=115200)
    cfg = Config.model_validate({**SITE, "elevators": [{**SITE["elevators"][0], "pulse_s": 1.0,
                                                         "renew_s": 0.3}]})
    board = SerialBoard(ModbusBoardConfig(port=sim.port, baud=115200, timeout_ms=50, poll_ms=30))
    store = Store(tmp_path / "g.db")
    controls = Controls(cfg, Outputs(cfg.outputs, {"main": board}), EventRecorder(store, tmp_path / "s"))
    try:
        deadline = time.monotonic() + 5
        while board.health()["state"] != "online" and time.monotonic() < deadline:
            time.sleep(0.01)
        since = sim.clock()
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            controls.ebike("car1")
            controls.poll()
            assert sim.coils()[3] or time.monotonic() < end - 1.9, "the hold dropped while renewed"
            time.sleep(0.05)
        writes = [f for f in sim.frames(since) if f[1] == modbus.WRITE_COIL and f[3] == 3]
        assert writes and all(f == modbus.flash_on(1, 3, 1.0) for f in writes)
        assert 5 <= len(writes) <= 9  # every 0.3 s for 2 s
        hung_at = time.monotonic()  # no more ebike()/poll(): the process is hung
        while sim.coils()[3]:
            assert time.monotonic() - hung_at < 1.3, "the board must drop the hold by itself"
            time.sleep(0.01)
    finally:
        board.close()
        sim.stop()
        store.close()


def test_a_dead_board_becomes_an_output_failed_alert(tmp_path):
    cfg = Config.model_validate({**SITE, "boards": [{"driver": "modbus", "port": str(tmp_path / "ttyGone")}]})
    board = SerialBoard(cfg.boards[0])
    store = Store(tmp_path / "g.db")
    controls = Controls(cfg, Outputs(cfg.outputs, {"main": board}), EventRecorder(store, tmp_path / "s"))
    try:
        controls.grant("door")  # must not raise into the gate worker
        [ev] = store.events()
        assert ev.kind == "alert" and ev.reason.startswith("output_failed: relay board main (")
        assert "ttyGone" in ev.reason
    finally:
        board.close()
        store.close()
